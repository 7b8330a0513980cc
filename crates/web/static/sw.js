// AudioBook's service worker: the app shell (page, wasm, scripts, styles)
// is kept in a cache so the app opens without a network. Shell files are
// fetched from the network first (so a new build is picked up at once when
// online) and from the cache when offline. The API, Socket.IO and media are
// never cached: they always go to the server.
const SHELL_CACHE = "audiobook-shell-v1";
const SHELL = [
  "/",
  "/index.html",
  "/web.js",
  "/web_bg.wasm",
  "/style.css",
  "/config.js",
  "/favicon.svg",
  "/vendor/socket.io.min.js",
];
// Paths the web app routes in the browser: offline they get the cached page.
const APP_ROUTES = ["/", "/onboard", "/recorder", "/records"];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches.open(SHELL_CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== SHELL_CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

function isShell(url) {
  return url.origin === self.location.origin && (SHELL.includes(url.pathname) || APP_ROUTES.includes(url.pathname));
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (!isShell(url)) return; // API, Socket.IO, media: straight to the network
  const key = APP_ROUTES.includes(url.pathname) ? "/index.html" : url.pathname;
  event.respondWith(
    fetch(request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(SHELL_CACHE).then((cache) => cache.put(key, copy));
        }
        return response;
      })
      .catch(() => caches.match(key).then((cached) => cached || Response.error())),
  );
});
