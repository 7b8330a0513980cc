// AudioBook's service worker: the app shell (page, wasm, scripts, styles,
// the Socket.IO client, config.js, the manifest and its icons) is kept in a cache so the app opens
// and records without a network; takes wait in the page's vault
// (IndexedDB) until the server can be reached.
//
// Shell files are fetched from the network first, so a new build (or a
// rewritten config.js) is picked up at once when online; the cached copy
// answers when the network fails, answers with a server error, or takes
// longer than NETWORK_TIMEOUT_MS (a network that swallows packets would
// otherwise keep the app from opening). The API, Socket.IO and media are
// never cached: they always go to the server.
const SHELL_CACHE = "audiobook-shell-v5";
// The lazy routes' modules (/recorder, /records) and their loader: the
// build writes their names here (xtask/src/web.rs).
const SPLIT_MODULES = [/* split modules: cargo xtask build-web */];
const SHELL = [
  ...SPLIT_MODULES,
  "/index.html",
  "/web.js",
  "/web_bg.wasm",
  "/style.css",
  "/transcript.css",
  "/config.js",
  "/favicon.svg",
  "/vendor/socket.io.min.js",
  "/manifest.webmanifest",
  // Lossless recording's audio worklet: a take offline must be able to start one.
  "/pcm-worklet.js",
  "/icons/icon.svg",
  "/icons/icon-192.png",
  "/icons/icon-512.png",
  "/icons/icon-maskable.svg",
  "/icons/icon-maskable-192.png",
  "/icons/icon-maskable-512.png",
];
// Paths the web app routes in the browser: offline they get the cached page.
const APP_ROUTES = ["/", "/index.html", "/onboard", "/recorder", "/records"];
const NETWORK_TIMEOUT_MS = 4000;

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(SHELL_CACHE)
      // The HTTP cache is bypassed so the shell is the one being served now.
      .then((cache) => cache.addAll(SHELL.map((path) => new Request(path, { cache: "reload" }))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== SHELL_CACHE).map((k) => caches.delete(k))))
      // Split modules of an earlier build (their names change with the build).
      .then(() => caches.open(SHELL_CACHE))
      .then((cache) =>
        cache.keys().then((requests) =>
          Promise.all(
            requests.filter((r) => !SHELL.includes(new URL(r.url).pathname)).map((r) => cache.delete(r)),
          ),
        ),
      )
      .then(() => self.clients.claim()),
  );
});

/** The cache key of a shell request: its path, the page for every app route; null for anything else. */
function shellKey(url) {
  if (url.origin !== self.location.origin) return null;
  if (APP_ROUTES.includes(url.pathname)) return "/index.html";
  return SHELL.includes(url.pathname) ? url.pathname : null;
}

// Stored with the server's Vary (Accept-Encoding): looked up by path only.
const cached = (key) => caches.match(key, { ignoreVary: true });

function networkFirst(request, key) {
  const network = fetch(request).then((response) => {
    if (response.ok && response.type === "basic") {
      const copy = response.clone();
      caches.open(SHELL_CACHE).then((cache) => cache.put(key, copy)).catch(() => {});
    }
    return response;
  });
  // Settled either way; the race below decides what the page gets.
  network.catch(() => {});
  const slow = new Promise((resolve) => setTimeout(resolve, NETWORK_TIMEOUT_MS)).then(() => "slow");
  return Promise.race([network, slow])
    .then(async (first) => {
      if (first === "slow") return (await cached(key)) || network;
      // A proxy answering for a server that is down.
      if (first.status >= 500) return (await cached(key)) || first;
      return first;
    })
    .catch(async () => (await cached(key)) || Response.error());
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const key = shellKey(new URL(request.url));
  if (key === null) return; // API, Socket.IO, media: straight to the network
  event.respondWith(networkFirst(request, key));
});
