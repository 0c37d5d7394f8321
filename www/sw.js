// The service worker that keeps the page working offline after one visit:
// it precaches the page, its scripts, the wasm and the demo checkpoint, and
// answers network-first so an online visit always gets the current build
// (the JS glue and the wasm must come from the same build), falling back to
// the cache when the network is gone. It never sees dropped files: those
// are read from disk by the worker, not fetched.
//
// Registered by app.js with the site root as scope, which needs the server
// to send `Service-Worker-Allowed: /` for this file.

const CACHE = "ckptcheck-v2";
const BASE = new URL("../", self.location.href);
// Every file the page and the widget load, each module of www/app/ too: a
// file left out here is missing offline on the next visit.
const PRECACHE = [
  "index.html",
  "www/app.js",
  "www/app/dom.js",
  "www/app/session.js",
  "www/app/presets.js",
  "www/app/hash.js",
  "www/app/intake.js",
  "www/app/check.js",
  "www/app/verdict.js",
  "www/app/explain.js",
  "www/app/findings.js",
  "www/app/tensors.js",
  "www/app/audit.js",
  "www/app/verify.js",
  "www/app/scan.js",
  "www/app/write.js",
  "www/app/pipeline.js",
  "www/client.js",
  "www/worker.js",
  "www/embed.js",
  "www/embed.css",
  "www/embed-demo.html",
  "www/style.css",
  "www/pkg/ckptcheck.js",
  "www/pkg/ckptcheck_bg.wasm",
  "www/demo/clip_cn_vit-l-14-336.shapes.pt",
].map((path) => new URL(path, BASE).href);

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(PRECACHE.map((url) => new Request(url, { cache: "reload" }))))
      .then(() => self.skipWaiting())
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((key) => key.startsWith("ckptcheck-") && key !== CACHE).map((key) => caches.delete(key))))
      .then(() => self.clients.claim())
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  event.respondWith(networkFirst(request, url));
});

async function networkFirst(request, url) {
  const cache = await caches.open(CACHE);
  // "/" and "/index.html" are one page; the hash never reaches us.
  const key = url.pathname === BASE.pathname ? new URL("index.html", BASE).href : url.origin + url.pathname;
  try {
    const response = await fetch(request);
    if (response.ok && response.type === "basic") cache.put(key, response.clone());
    return response;
  } catch (error) {
    const cached = await cache.match(key);
    if (cached) return cached;
    throw error;
  }
}
