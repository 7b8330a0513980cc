// One small driver interface over three browsers, so the cross-browser
// scenario is written once:
//   chromium  headless Chromium through playwright-core (as the feature tests)
//   firefox   Firefox ESR through puppeteer-core over WebDriver BiDi
//   webkit    WebKitGTK's MiniBrowser through WebKitWebDriver (W3C WebDriver
//             over fetch) under Xvfb
// Firefox and WebKit play through a PulseAudio null sink started here.
//
// Every backend implements a handful of primitives (evaluate an expression,
// find an element, click it, fill it, go to a URL, screenshot, close); the
// rest (waiting, queries by role, label or text) is shared and runs the same
// code in each page (./dom.mjs).
//
// Environment (set by `cargo xtask test`; the defaults are Debian's paths):
//   CHROMIUM, FIREFOX, MINIBROWSER   the browser binaries
//   WEBKIT_WEBDRIVER                 WebKitGTK's WebDriver (default: on PATH)

import fs from "node:fs";
import path from "node:path";

import { artifactsDir, freePort, launchBrowser, sleep } from "../harness.mjs";
import { startDaemon, startPulseAudio, startXvfb } from "../desktop.mjs";
import { findInPage } from "./dom.mjs";

export const BROWSERS = ["chromium", "firefox", "webkit"];

const VIEWPORT = { width: 1100, height: 760 };
const FIREFOX = process.env.FIREFOX || "/usr/lib/firefox-esr/firefox-esr";
const MINIBROWSER = process.env.MINIBROWSER || "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser";
const WEBKIT_WEBDRIVER = process.env.WEBKIT_WEBDRIVER || "WebKitWebDriver";

/** A query matcher: a string matches exactly (a substring for `text`), a RegExp by test. */
const matcher = (want) => (want instanceof RegExp ? { regex: want.source, flags: want.flags } : { text: String(want) });

/** Queries for the driver's methods. `within` is a CSS selector that scopes the search. */
export const by = {
  css: (css, within) => ({ css, within }),
  role: (role, name, within) => ({ role, name: matcher(name), within }),
  label: (label, within) => ({ label: matcher(label), within }),
  text: (text, within) => ({ text: matcher(text), within }),
};

const describeQuery = (q) => JSON.stringify(q);

class Driver {
  constructor(name) {
    this.name = name;
  }

  /** Runs `fn(arg)` in the page (awaiting a promise) and returns its JSON value. */
  async evaluate(fn, arg = null) {
    return this.evalExpression(`(${fn.toString()})(${JSON.stringify(arg)})`);
  }

  /** Polls `fn(arg)` in the page until it returns something truthy, and returns that. */
  async waitForFunction(fn, arg = null, { timeout = 20_000, polling = 100, what } = {}) {
    let last;
    await this.until(async () => (last = await this.evaluate(fn, arg)), {
      timeout,
      polling,
      what: () => `${what ?? fn.toString()} (last: ${JSON.stringify(last)})`,
    });
    return last;
  }

  /** Polls `check()` (in Node) until it is truthy; `what()` describes it for the timeout error. */
  async until(check, { timeout = 20_000, polling = 100, what = () => check.toString() } = {}) {
    const deadline = Date.now() + timeout;
    for (;;) {
      if (await check()) return;
      if (Date.now() > deadline) throw new Error(`${this.name}: timed out after ${timeout} ms waiting for ${what()}`);
      await sleep(polling);
    }
  }

  async exists(query) {
    return this.evalExpression(`(${findInPage.toString()})(${JSON.stringify(query)}) !== null`);
  }

  /** Waits until `query` matches a visible element (or, with `gone`, none). */
  async waitFor(query, { timeout = 20_000, gone = false } = {}) {
    const deadline = Date.now() + timeout;
    while ((await this.exists(query)) === gone) {
      if (Date.now() > deadline) {
        throw new Error(`${this.name}: timed out after ${timeout} ms waiting for ${gone ? "no " : ""}${describeQuery(query)}`);
      }
      await sleep(100);
    }
  }

  /** The trimmed text of the element `query` finds (waiting for it). */
  async text(query, options) {
    await this.waitFor(query, options);
    return this.evalExpression(`(${findInPage.toString()})(${JSON.stringify(query)})?.textContent.trim() ?? null`);
  }

  /** The value of the input `query` finds (waiting for it). */
  async value(query, options) {
    await this.waitFor(query, options);
    return this.evalExpression(`(${findInPage.toString()})(${JSON.stringify(query)})?.value ?? null`);
  }

  async locate(query, timeout = 20_000) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const handle = await this.elementAt(`(${findInPage.toString()})(${JSON.stringify(query)})`);
      if (handle) return handle;
      if (Date.now() > deadline) throw new Error(`${this.name}: no element for ${describeQuery(query)} after ${timeout} ms`);
      await sleep(100);
    }
  }

  /** Clicks the element `query` finds, with the browser's own input (a user gesture). */
  async click(query, { timeout } = {}) {
    const handle = await this.locate(query, timeout);
    await this.clickElement(handle);
  }

  /** Replaces the text in the field labelled `label` by typing `value`. */
  async fill(label, value) {
    const handle = await this.locate(by.label(label));
    await this.fillElement(handle, value);
  }

  async waitForUrl(regex, timeout = 20_000) {
    const deadline = Date.now() + timeout;
    let url;
    while (!regex.test((url = await this.currentUrl()))) {
      if (Date.now() > deadline) throw new Error(`${this.name}: URL is ${url}, waited ${timeout} ms for ${regex}`);
      await sleep(100);
    }
    return url;
  }

  /** A PNG of the viewport in target/e2e-artifacts/NAME-BROWSER.png. */
  async screenshot(name) {
    const file = path.join(artifactsDir(), `${name}-${this.name}.png`);
    await this.screenshotTo(file);
    return file;
  }
}

// ------------------------------------------------------------- Chromium

class ChromiumDriver extends Driver {
  static async launch({ dir, wav, profile, inMemory }) {
    const driver = new ChromiumDriver("chromium");
    const { context, page, logs, userDataDir } = await launchBrowser(dir, wav, { userDataDir: profile, inMemory });
    Object.assign(driver, { context, page, logLines: logs, userDataDir });
    return driver;
  }

  async reload() {
    // A take under way asks before the page goes (beforeunload): leave.
    const accept = (d) => d.accept().catch(() => {});
    this.page.on("dialog", accept);
    try {
      await this.page.reload();
    } finally {
      this.page.off("dialog", accept);
    }
  }

  /** SIGKILLs the browser process (a crash); its profile stays for the next launch. */
  async kill() {
    // Chromium names its main process in the profile's lock: "host-pid".
    const lock = fs.readlinkSync(path.join(this.userDataDir, "SingletonLock"));
    const pid = Number(lock.slice(lock.lastIndexOf("-") + 1));
    process.kill(pid, "SIGKILL");
    await this.until(() => !alive(pid), { timeout: 10_000, what: () => `Chromium ${pid} to die` });
    await this.close();
  }

  evalExpression(expression) {
    return this.page.evaluate(expression);
  }

  async elementAt(expression) {
    const handle = await this.page.evaluateHandle(expression);
    const element = handle.asElement();
    if (!element) await handle.dispose();
    return element;
  }

  clickElement(element) {
    return element.click();
  }

  fillElement(element, value) {
    return element.fill(value);
  }

  async goto(url) {
    await this.page.goto(url);
  }

  async currentUrl() {
    return this.page.url();
  }

  screenshotTo(file) {
    return this.page.screenshot({ path: file, fullPage: true });
  }

  logs() {
    return this.logLines.join("\n");
  }

  async close() {
    await this.context.close().catch(() => {});
  }
}

// -------------------------------------------------------------- Firefox

class FirefoxDriver extends Driver {
  static async launch({ dir, profile, prefs = {} }) {
    const { default: puppeteer } = await import("puppeteer-core");
    const driver = new FirefoxDriver("firefox");
    driver.pulse = await startPulseAudio(dir);
    try {
      driver.browser = await puppeteer.launch({
        browser: "firefox",
        executablePath: FIREFOX,
        headless: true,
        userDataDir: profile ?? fs.mkdtempSync(path.join(dir, "firefox-")),
        defaultViewport: VIEWPORT,
        env: { ...process.env, ...driver.pulse.env },
        extraPrefsFirefox: {
          // The fake microphone (a 1 kHz tone), granted without a prompt.
          "media.navigator.streams.fake": true,
          "media.navigator.permission.disabled": true,
          // The player starts on the click that chose a recording.
          "media.autoplay.default": 0,
          "media.autoplay.blocking_policy": 0,
          ...prefs,
        },
      });
      const [first] = await driver.browser.pages();
      driver.page = first ?? (await driver.browser.newPage());
      // The page that was open at launch does not get defaultViewport.
      await driver.page.setViewport(VIEWPORT);
    } catch (e) {
      await driver.close();
      throw e;
    }
    driver.logLines = [];
    driver.page.on("console", (m) => driver.logLines.push(`[console.${m.type()}] ${m.text()}`));
    driver.page.on("pageerror", (e) => driver.logLines.push(`[pageerror] ${e.message}`));
    return driver;
  }

  evalExpression(expression) {
    return this.page.evaluate(expression);
  }

  async elementAt(expression) {
    const handle = await this.page.evaluateHandle(expression);
    const element = handle.asElement();
    if (!element) await handle.dispose();
    return element;
  }

  clickElement(element) {
    return element.click();
  }

  async reload() {
    const accept = (d) => d.accept().catch(() => {});
    this.page.on("dialog", accept);
    try {
      await this.page.reload();
    } finally {
      this.page.off("dialog", accept);
    }
  }

  /** SIGKILLs the browser process (a crash); its profile stays for the next launch. */
  async kill() {
    const child = this.browser.process();
    child.kill("SIGKILL");
    await this.until(() => child.exitCode !== null || child.signalCode !== null, {
      timeout: 10_000,
      what: () => `Firefox ${child.pid} to die`,
    });
    await this.close();
  }

  async fillElement(element, value) {
    // Select what is there, so typing replaces it.
    await element.evaluate((el) => {
      el.focus();
      el.select();
    });
    if (value === "") await element.press("Backspace");
    else await element.type(value);
  }

  async goto(url) {
    await this.page.goto(url);
  }

  async currentUrl() {
    return this.page.url();
  }

  screenshotTo(file) {
    return this.page.screenshot({ path: file });
  }

  logs() {
    return this.logLines.join("\n");
  }

  async close() {
    if (this.browser) await this.browser.close().catch(() => {});
    if (this.pulse) await this.pulse.stop();
  }
}

// --------------------------------------------------------------- WebKit

const ELEMENT = "element-6066-11e4-a52e-4f735466cecf";

/** WebKitGTK's MiniBrowser through WebKitWebDriver, spoken to with plain W3C WebDriver requests. */
class WebKitDriver extends Driver {
  static async launch({ dir }) {
    const driver = new WebKitDriver("webkit");
    try {
      driver.pulse = await startPulseAudio(dir);
      driver.xvfb = await startXvfb(dir);
      const port = await freePort();
      driver.webdriver = startDaemon("webkitwebdriver", WEBKIT_WEBDRIVER, [`--port=${port}`], dir, {
        ...process.env,
        ...driver.pulse.env,
        ...driver.xvfb.env,
      });
      driver.base = `http://127.0.0.1:${port}`;
      await driver.waitReady();
      const session = await driver.request("POST", "/session", {
        capabilities: {
          alwaysMatch: {
            "webkitgtk:browserOptions": {
              binary: MINIBROWSER,
              args: [
                "--automation",
                "--enable-media-stream=true",
                // "Mock audio device 1", a 44.1 kHz tone, granted without a prompt.
                "--enable-mock-capture-devices=true",
                "--enable-webaudio=true",
                "--enable-mediasource=true",
                "--media-playback-requires-user-gesture=false",
                "--autoplay-policy=allow",
                "--enable-write-console-messages-to-stdout=true",
              ],
            },
          },
        },
      });
      driver.session = `/session/${session.sessionId}`;
      await driver.request("POST", `${driver.session}/timeouts`, { script: 30_000, pageLoad: 30_000, implicit: 0 });
      await driver.request("POST", `${driver.session}/window/rect`, VIEWPORT).catch(() => {});
    } catch (e) {
      await driver.close();
      throw e;
    }
    return driver;
  }

  async waitReady() {
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        const res = await fetch(`${this.base}/status`);
        if (res.ok) return;
      } catch {
        // not listening yet
      }
      if (!this.webdriver.running() || Date.now() > deadline) {
        throw new Error(`WebKitWebDriver did not start:\n${this.webdriver.logTail()}`);
      }
      await sleep(100);
    }
  }

  async request(method, route, body) {
    const res = await fetch(`${this.base}${route}`, {
      method,
      headers: body ? { "content-type": "application/json; charset=utf-8" } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    let value;
    try {
      ({ value } = JSON.parse(text));
    } catch {
      throw new Error(`webkit: ${method} ${route} answered ${res.status}: ${text.slice(0, 300)}`);
    }
    if (!res.ok) {
      throw new Error(`webkit: ${method} ${route}: ${value?.error}: ${value?.message}`);
    }
    return value;
  }

  evalExpression(expression) {
    return this.request("POST", `${this.session}/execute/sync`, { script: `return ${expression};`, args: [] });
  }

  async elementAt(expression) {
    const value = await this.evalExpression(expression);
    return value && value[ELEMENT] ? value[ELEMENT] : null;
  }

  async clickElement(id) {
    await this.request("POST", `${this.session}/element/${id}/click`, {});
  }

  async fillElement(id, value) {
    await this.request("POST", `${this.session}/element/${id}/clear`, {});
    if (value !== "") await this.request("POST", `${this.session}/element/${id}/value`, { text: value });
  }

  async goto(url) {
    await this.request("POST", `${this.session}/url`, { url });
  }

  currentUrl() {
    return this.request("GET", `${this.session}/url`);
  }

  async screenshotTo(file) {
    const png = await this.request("GET", `${this.session}/screenshot`);
    fs.writeFileSync(file, Buffer.from(png, "base64"));
  }

  /** MiniBrowser writes the page's console to its standard output, which goes to the WebDriver's log. */
  logs() {
    return this.webdriver ? this.webdriver.logTail(80) : "";
  }

  async close() {
    if (this.session) await this.request("DELETE", this.session).catch(() => {});
    if (this.webdriver) await this.webdriver.stop();
    if (this.xvfb) await this.xvfb.stop();
    if (this.pulse) await this.pulse.stop();
  }
}

const BACKENDS = { chromium: ChromiumDriver, firefox: FirefoxDriver, webkit: WebKitDriver };

/** Whether process `pid` still exists. */
function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts `browser` ("chromium", "firefox" or "webkit") with a fake
 * microphone (Chromium plays `wav`; Firefox and WebKit have their own tone)
 * and everything it needs around it, all in `dir`. `profile` reuses a
 * profile folder (Chromium and Firefox), `prefs` adds Firefox preferences,
 * `inMemory` gives Chromium a context without a profile on disk.
 */
export async function launch(browser, { dir, wav, profile, prefs, inMemory }) {
  const backend = BACKENDS[browser];
  if (!backend) throw new Error(`unknown browser ${browser}: one of ${BROWSERS.join(", ")}`);
  return backend.launch({ dir, wav, profile, prefs, inMemory });
}
