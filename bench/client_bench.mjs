// Figures of the browser client (clients/js/dingo.js) for bench/RESULTS.md, in Debian's
// headless Chromium against a real supervisor with 2 workers that this script starts:
//   - time from a blocked or hung WebSocket to messages flowing over the fallback;
//   - connection attempts per minute against a dead server;
//   - the client's size: raw, gzipped, minified (terser) and minified + gzipped;
//   - the page's JS heap after GC at 100, 1,000 and 3,000 subscribe/unsubscribe cycles.
//
//   (cd bench/node && npm install) && node bench/client_bench.mjs [BUILD/bin]
// playwright-core comes from tests/browser/node_modules (npm ci there).
import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { createRequire } from "node:module";

const here = path.dirname(new URL(import.meta.url).pathname);
const root = path.join(here, "..");
const require = createRequire(import.meta.url);
const { chromium } = require(path.join(root, "tests/browser/node_modules/playwright-core"));
const { minify } = require(path.join(here, "node/node_modules/terser"));
const bin = path.resolve(process.argv[2] || path.join(root, "build/bin"));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const freePort = () => new Promise((resolve) => {
  const s = net.createServer().listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
});
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// ---- size ----------------------------------------------------------------------------
const source = fs.readFileSync(path.join(root, "clients/js/dingo.js"), "utf8");
const min = (await minify(source, { module: true, compress: { passes: 2 }, mangle: true })).code;
const gz = (s) => zlib.gzipSync(s, { level: 9 }).length;
const kb = (n) => (n / 1024).toFixed(1);
console.log(`size: ${kb(source.length)} KB raw, ${kb(gz(source))} KB gzipped, ${kb(min.length)} KB minified, ` +
  `${kb(gz(min))} KB minified+gzipped`);

// ---- a supervisor --------------------------------------------------------------------
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dingo-client-bench-"));
const port = await freePort();
fs.writeFileSync(path.join(dir, "dingo.toml"), `[supervisor]
workers = 2
control_socket = "control.sock"
pid_file = "supervisor.pid"
[[listen]]
address = "127.0.0.1:${port}"
[admin]
address = ""
[gateway]
client_publish = true
commands_per_second = 100000
`);
const sup = spawn(path.join(bin, "dingo-supervisor"), ["--config", path.join(dir, "dingo.toml")],
  { cwd: dir, stdio: ["ignore", "ignore", fs.openSync(path.join(dir, "log"), "w")] });
const origin = `http://127.0.0.1:${port}`;
for (let i = 0; ; i++) {
  try { if ((await fetch(`${origin}/healthz`)).ok) break; } catch {}
  if (i > 100) throw new Error("the supervisor did not start: " + fs.readFileSync(path.join(dir, "log"), "utf8"));
  await sleep(100);
}
const publish = (channel, data) => new Promise((resolve, reject) => {
  const req = http.request({ host: "127.0.0.1", port, path: `/v1/publish${channel}`, method: "POST", agent: false },
    (res) => { res.resume(); res.on("end", resolve); });
  req.on("error", reject);
  req.end(JSON.stringify(data));
});

const browser = await chromium.launch({ executablePath: process.env.DINGO_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });

async function page(route) {
  const context = await browser.newContext();
  const p = await context.newPage();
  if (route) await route(p);
  await p.goto(`${origin}/healthz`);
  return { context, page: p };
}

const only = process.env.ONLY; // fallback, dead or heap: one part
try {
  if (!only || only === "fallback") {
  // ---- fallback: connect() to the first message over the fallback --------------------
  const blockWs = (p) => p.routeWebSocket(/\/v1\/ws/, (ws) => ws.close());
  const hangWs = (p) => p.routeWebSocket(/\/v1\/ws/, () => {});
  const blockSse = (p) => p.route(/\/v1\/sse/, (r) => r.abort());
  for (const [what, route] of [
    ["WebSocket blocked -> SSE", blockWs],
    ["WebSocket hangs -> SSE", hangWs],
    ["WebSocket and SSE blocked -> poll", async (p) => { await blockWs(p); await blockSse(p); }],
    ["WebSocket hangs, SSE blocked -> poll", async (p) => { await hangWs(p); await blockSse(p); }],
  ]) {
    const times = [];
    for (let run = 0; run < 5; run++) {
      const { context, page: p } = await page(route);
      const channel = `/bench/fallback/${times.length}/${Date.now()}`;
      let publishing = true;
      (async () => { for (let n = 0; publishing; n++) { await publish(channel, { n }).catch(() => {}); await sleep(50); } })();
      const ms = await p.evaluate(async (channel) => {
        const { connect } = await import("/v1/client.js");
        const t0 = performance.now();
        const c = connect(location.origin);
        return new Promise((resolve) => c.subscribe(channel).on("message", () => { resolve(performance.now() - t0); c.close(); }));
      }, channel);
      publishing = false;
      times.push(ms);
      await context.close();
    }
    console.log(`fallback, ${what}: first message after ${times.map((t) => Math.round(t)).join(", ")} ms ` +
      `(median ${Math.round(median(times))})`);
  }

  }
  if (!only || only === "dead") {
  // ---- attempts per minute against a dead server -------------------------------------
  const dead = `http://127.0.0.1:${await freePort()}`;
  const pages = [];
  for (let i = 0; i < 5; i++) {
    const x = await page();
    await x.page.evaluate(async (dead) => {
      window.attempts = 0;
      const WS = window.WebSocket, ES = window.EventSource, f = window.fetch;
      window.WebSocket = class extends WS { constructor(...a) { super(...a); window.attempts++; } };
      window.EventSource = class extends ES { constructor(...a) { super(...a); window.attempts++; } };
      window.fetch = (u, ...r) => { if (String(u).includes("/v1/poll")) window.attempts++; return f(u, ...r); };
      const { connect } = await import("/v1/client.js");
      connect(dead).subscribe("/bench/dead");
    }, dead);
    pages.push(x);
  }
  await sleep(60000);
  const counts = [];
  for (const x of pages) { counts.push(await x.page.evaluate(() => window.attempts)); await x.context.close(); }
  console.log(`dead server: attempts in the first minute, 5 clients: ${counts.join(", ")} ` +
    `(3 transports a cycle; median ${median(counts)})`);

  }
  if (!only || only === "heap") {
  // ---- heap after subscribe/unsubscribe cycles ---------------------------------------
  const { context, page: p } = await page();
  const cdp = await context.newCDPSession(p);
  await p.evaluate(async () => {
    const { connect } = await import("/v1/client.js");
    window.c = connect(location.origin);
    await new Promise((r) => window.c.on("state", (s) => s.state === "connected" && r()));
    window.cycle = async (from, to) => {
      for (let i = from; i < to; i++) {
        const sub = window.c.subscribe(`/bench/heap/${i}`);
        sub.on("message", () => {});
        // (commands_per_second is raised above: a refusal would be an error event)
        await new Promise((r) => { sub.on("subscribed", r); sub.on("error", (e) => { window.errors = e; r(); }); });
        sub.unsubscribe();
      }
    };
  });
  const heap = async () => {
    await cdp.send("HeapProfiler.collectGarbage");
    return (await cdp.send("Runtime.getHeapUsage")).usedSize;
  };
  await p.evaluate(() => window.cycle(0, 100));
  const at100 = await heap();
  await p.evaluate(() => window.cycle(100, 1000));
  const at1000 = await heap();
  await p.evaluate(() => window.cycle(1000, 3000));
  const at3000 = await heap();
  const left = await p.evaluate(() => ({ ...window.c.debug(), error: window.errors }));
  console.log(`heap after GC: ${kb(at100)} KB at 100 cycles, ${kb(at1000)} KB at 1000, ${kb(at3000)} KB at 3000; ` +
    `the client holds ${JSON.stringify(left)}`);
  await context.close();
  }
} finally {
  await browser.close();
  sup.kill("SIGTERM");
  await new Promise((r) => sup.on("exit", r));
  fs.rmSync(dir, { recursive: true, force: true });
}
