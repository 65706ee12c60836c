// Usage: node detect.mjs MODEL.tflite PIXELS.rgb WIDTH HEIGHT SCORE_THRESHOLD
// Serves a static page, the model, the raw RGB pixels and @mediapipe/tasks-vision (wasm from node_modules) on
// 127.0.0.1, runs MediaPipe's ObjectDetector in headless Chromium (CHROMIUM, default /usr/bin/chromium) and
// prints {"ok", "ms", "detections": [[x, y, w, h, score, kx0, ky0, ...], ...]} as JSON on stdout.
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { dirname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const [model, pixels, width, height, threshold] = process.argv.slice(2);
if (!threshold) {
  console.error("usage: node detect.mjs MODEL.tflite PIXELS.rgb WIDTH HEIGHT SCORE_THRESHOLD");
  process.exit(2);
}
const TYPES = { ".html": "text/html", ".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm" };
const library = join(here, "node_modules", "@mediapipe", "tasks-vision");

function fileFor(url) {
  if (url === "/") return join(here, "page.html");
  if (url === "/model.tflite") return model;
  if (url === "/pixels.rgb") return pixels;
  if (url.startsWith("/tasks-vision/")) {
    const path = normalize(join(library, url.slice("/tasks-vision/".length)));
    return path.startsWith(library) ? path : null;
  }
  return null;
}

const server = createServer(async (request, response) => {
  const path = fileFor(new URL(request.url, "http://127.0.0.1").pathname);
  try {
    if (!path) throw new Error("not found");
    const body = await readFile(path);
    const suffix = path.slice(path.lastIndexOf("."));
    response.writeHead(200, { "Content-Type": TYPES[suffix] || "application/octet-stream" });
    response.end(body);
  } catch {
    response.writeHead(404);
    response.end();
  }
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const port = server.address().port;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update"],
});
let exitCode = 0;
try {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${port}/?width=${width}&height=${height}&score_threshold=${threshold}`);
  await page.waitForFunction(() => window.featherface !== undefined, null, { timeout: 180000 });
  const result = await page.evaluate(() => window.featherface);
  process.stdout.write(JSON.stringify(result) + "\n");
  exitCode = result.ok ? 0 : 1;
} finally {
  await browser.close();
  server.close();
}
process.exit(exitCode);
