// Helpers for the browser tests and bench/page_bench.mjs: a static HTTP
// server over the repository root that logs every request, the headless
// Chromium launch, and a multi-GB sparse safetensors checkpoint written on
// the fly (a real header, then holes). Not a test file itself.

import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

const MIME = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".wasm": "application/wasm",
  ".json": "application/json",
  ".png": "image/png",
  ".svg": "image/svg+xml",
  ".md": "text/markdown; charset=utf-8",
};

/** Serve ROOT on 127.0.0.1 at a random port. `server.requests` lists every
 * request (`{method, url}`); `server.stop()` closes it and every open
 * connection, so the next request is refused as if the network were gone. */
export async function startServer() {
  const requests = [];
  const server = http.createServer((request, response) => {
    const url = new URL(request.url, "http://127.0.0.1");
    requests.push({ method: request.method, url: url.pathname });
    let relative = decodeURIComponent(url.pathname);
    if (relative.endsWith("/")) relative += "index.html";
    const file = path.resolve(ROOT, `.${relative}`);
    if (!file.startsWith(ROOT + path.sep) || file.includes(`${path.sep}node_modules${path.sep}`)) {
      response.writeHead(403).end("forbidden");
      return;
    }
    fs.stat(file, (error, stat) => {
      if (error || !stat.isFile()) {
        response.writeHead(404, { "Content-Type": "text/plain" }).end("not found");
        return;
      }
      const headers = {
        "Content-Type": MIME[path.extname(file)] || "application/octet-stream",
        "Content-Length": stat.size,
        "Cache-Control": "no-cache",
      };
      // The service worker lives in www/ but serves the page at the root.
      if (relative === "/www/sw.js") headers["Service-Worker-Allowed"] = "/";
      response.writeHead(200, headers);
      if (request.method === "HEAD") response.end();
      else fs.createReadStream(file).pipe(response);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    origin: `http://127.0.0.1:${port}`,
    port,
    requests,
    stop: () =>
      new Promise((resolve) => {
        server.close(resolve);
        server.closeAllConnections();
      }),
  };
}

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"],
  });
}

/** A safetensors file declaring every tensor of a Chinese-CLIP model from
 * tests/fixtures/cn_clip/models.json at its full size, with F32 data offsets;
 * the data region is a hole, so a 3.8 GB file takes a few kilobytes of disk.
 * Returns `{path, size, n_tensors, header_bytes}`. */
export function makeSparseSafetensors(dir, model = "ViT-H-14@RoBERTa-wwm-ext-large-chinese") {
  const models = JSON.parse(fs.readFileSync(path.join(ROOT, "tests/fixtures/cn_clip/models.json"), "utf8")).models;
  const tensors = models[model].tensors;
  const header = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const [name, shape, dtype] of tensors) {
    if (dtype !== "F32") throw new Error(`${name}: expected F32, got ${dtype}`);
    const nbytes = shape.reduce((acc, d) => acc * d, 1) * 4;
    header[name] = { dtype: "F32", shape, data_offsets: [offset, offset + nbytes] };
    offset += nbytes;
  }
  // https://github.com/huggingface/safetensors#format: u64 little-endian
  // header size, then the JSON, padded with spaces to a multiple of 8.
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const file = path.join(dir, `${model.replace(/[@]/g, "_")}.sparse.safetensors`);
  fs.writeFileSync(file, Buffer.concat([prefix, Buffer.from(json)]));
  const size = 8 + Buffer.byteLength(json) + offset;
  fs.truncateSync(file, size);
  return { path: file, size, n_tensors: tensors.length, header_bytes: 8 + Buffer.byteLength(json) };
}

export function tempDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), "ckptcheck-e2e-"));
}
