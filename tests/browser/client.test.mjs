// The browser client (clients/js/dingo.js, served at /v1/client.js) in headless Chromium
// against a real supervisor with 2 workers (client_publish = true): it resumes exactly
// when its worker is killed, falls back to SSE and polling when the WebSocket is blocked
// or hangs, recovers after the network goes offline, backs off against a dead server, and
// close() leaves nothing behind. The numbers it checks are docs/client.md's.
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { after, before, test } from "node:test";
import { env, gateway, launch, status, waitFor } from "./harness.mjs";

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

// Publishes over REST on a fresh connection each time (a kept-alive one could be to a
// worker the test just killed); resolves to the position. A connection the supervisor
// handed to a worker killed a moment before is reset before its request is read: retried.
async function publish(channel, data) {
  for (let i = 0; ; i++) {
    try {
      return await publishOnce(channel, data);
    } catch (e) {
      if (i === 5 || !["ECONNRESET", "ECONNREFUSED", "EPIPE"].includes(e.code)) throw e;
      await sleep(100);
    }
  }
}

function publishOnce(channel, data) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify(data);
    const req = http.request({ host: "127.0.0.1", port: env.httpPort, path: `/v1/publish${channel}`, method: "POST",
      agent: false, headers: { "Content-Length": Buffer.byteLength(body) } }, (res) => {
      let text = "";
      res.on("data", (c) => { text += c; });
      res.on("end", () => res.statusCode === 200 ? resolve(JSON.parse(text).position)
        : reject(new Error(`publish ${channel}: ${res.statusCode} ${text}`)));
    });
    req.on("error", reject);
    req.end(body);
  });
}

// Runs in the page before anything else: counts what the client tries (WebSockets, event
// streams, polls) and which timers and page listeners are live.
function instrument() {
  window.attempts = [];
  const note = (kind) => window.attempts.push({ kind, t: Date.now() });
  const WS = window.WebSocket;
  window.WebSocket = class extends WS { constructor(...a) { super(...a); note("websocket"); } };
  const ES = window.EventSource;
  window.EventSource = class extends ES { constructor(...a) { super(...a); note("sse"); } };
  const fetch0 = window.fetch;
  window.fetch = (url, ...rest) => { if (String(url).includes("/v1/poll")) note("poll"); return fetch0(url, ...rest); };
  const live = (window.liveTimers = new Set());
  const st = window.setTimeout, ct = window.clearTimeout, si = window.setInterval, ci = window.clearInterval;
  window.setTimeout = (fn, ms, ...a) => { const id = st((...b) => { live.delete(id); fn(...b); }, ms, ...a); live.add(id); return id; };
  window.clearTimeout = (id) => { live.delete(id); ct(id); };
  window.setInterval = (fn, ms, ...a) => { const id = si(fn, ms, ...a); live.add(id); return id; };
  window.clearInterval = (id) => { live.delete(id); ci(id); };
  window.liveListeners = 0;
  for (const target of [window, document]) {
    const add = target.addEventListener.bind(target), remove = target.removeEventListener.bind(target);
    target.addEventListener = (...a) => { window.liveListeners++; add(...a); };
    target.removeEventListener = (...a) => { window.liveListeners--; remove(...a); };
  }
}

// A new page (own context) on the gateway's origin running a client of `origin` with
// `options`, subscribed to `channel`: window.got collects data.n of its messages.
async function openClient({ origin = gateway, options = {}, channel = null, route = null } = {}) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.addInitScript(instrument);
  if (route) await route(page);
  await page.goto(`${gateway}/healthz`);
  const t0 = Date.now();
  await page.evaluate(async ({ origin, options, channel }) => {
    const { connect } = await import("/v1/client.js");
    window.states = [];
    window.got = [];
    window.positions = [];
    window.subscribed = [];
    const client = (window.client = connect(origin, options));
    client.on("state", (s) => window.states.push({ ...s, t: Date.now() }));
    if (channel) {
      const sub = (window.sub = client.subscribe(channel));
      sub.on("message", (m) => { window.got.push(m.data.n); window.positions.push(m.position); });
      sub.on("subscribed", (e) => window.subscribed.push(e));
    }
  }, { origin, options, channel });
  return { context, page, t0 };
}

const connectedOver = (page, transport, ms) => waitFor(() => page.evaluate((t) => {
  const s = window.states.at(-1);
  return s && s.state === "connected" && s.transport === t && window.subscribed.length > 0 ? s.t : null;
}, transport), ms, `the client connected over ${transport}`);

const gotAll = (page, n, ms = 10000) =>
  waitFor(() => page.evaluate((n) => window.got.length >= n, n), ms, `${n} messages in the page`).then(() =>
    page.evaluate(() => window.got));

test("publish resolves to the message's position, over WebSocket and over REST on SSE", async () => {
  for (const transports of [["websocket"], ["sse"]]) {
    const channel = `/t/publish-${transports[0]}`;
    const { context, page } = await openClient({ channel, options: { transports } });
    await connectedOver(page, transports[0], 10000);
    const position = await page.evaluate((c) => window.client.publish(c, { n: 1 }), channel);
    await gotAll(page, 1);
    assert.match(position, /^[0-9a-z]{10}\.1$/);
    assert.deepEqual(await page.evaluate(() => window.positions), [position]);
    await context.close();
  }
});

test("resumes with no lost or repeated message when its worker is killed", async () => {
  const channel = "/t/kill";
  const { context, page } = await openClient({ channel });
  await connectedOver(page, "websocket", 10000);
  let n = 0;
  while (n < 5) await publish(channel, { n: ++n });
  await gotAll(page, 5);
  for (let round = 0; round < 2; round++) {
    // The worker holding the page's WebSocket (status is refreshed about once a second).
    const pid = await waitFor(() => status().workers.find((w) => w.ws_connections > 0 && w.state === "ready")?.pid,
      10000, "a worker with the page's WebSocket");
    const states = await page.evaluate(() => window.states.length);
    process.kill(pid, "SIGKILL");
    for (let i = 0; i < 10; i++) { await publish(channel, { n: ++n }); await sleep(150); }
    await waitFor(() => page.evaluate((k) => window.states.slice(k).some((s) => s.state === "connecting") &&
      window.states.at(-1).state === "connected", states), 15000, "a reconnect after the kill");
    for (let i = 0; i < 5; i++) await publish(channel, { n: ++n });
    assert.deepEqual(await gotAll(page, n), range(1, n));
    await waitFor(() => !status().workers.some((w) => w.pid === pid) &&
      status().workers.every((w) => w.state === "ready"), 15000, "the killed worker replaced");
  }
  await sleep(500);
  assert.deepEqual(await page.evaluate(() => window.got), range(1, n)); // nothing late, nothing twice
  await context.close();
});

// Fallbacks: [what is done to the page, the transport expected, its name]. `routed`
// counts the WebSockets the page opened.
let routed = 0;
const blockWs = (page) => page.routeWebSocket(/\/v1\/ws/, (ws) => { routed++; ws.close(); });
const hangWs = (page) => page.routeWebSocket(/\/v1\/ws/, () => { routed++; }); // opens, never answers
const blockSse = (page) => page.route(/\/v1\/sse/, (route) => route.abort());
for (const [route, transport, what] of [
  [blockWs, "sse", "blocked"],
  [hangWs, "sse", "hangs"],
  [async (page) => { await blockWs(page); await blockSse(page); }, "poll", "blocked and SSE too"],
  [async (page) => { await hangWs(page); await blockSse(page); }, "poll", "hangs and SSE is blocked"],
]) {
  test(`falls back to ${transport} within 10 s when the WebSocket ${what}, and messages flow`, async () => {
    const channel = `/t/fallback-${transport}-${what.replace(/\W+/g, "-")}`;
    routed = 0;
    const { context, page, t0 } = await openClient({ channel, route });
    const t = await connectedOver(page, transport, 15000);
    assert.ok(t - t0 < 10000, `connected over ${transport} after ${t - t0} ms`);
    assert.equal(routed, 1, "the WebSocket was tried first, once");
    console.log(`WebSocket ${what}: connected over ${transport} after ${t - t0} ms`);
    for (let i = 1; i <= 5; i++) await publish(channel, { n: i });
    assert.deepEqual(await gotAll(page, 5), range(1, 5));
    await context.close();
  });
}

test("moves back to the WebSocket once it works again", async () => {
  const channel = "/t/back";
  let blocked = true;
  const route = (page) => page.routeWebSocket(/\/v1\/ws/, (ws) => { if (blocked) ws.close(); else ws.connectToServer(); });
  const { context, page } = await openClient({ channel, route });
  await connectedOver(page, "sse", 15000);
  await publish(channel, { n: 1 });
  await gotAll(page, 1);
  blocked = false;
  await publish(channel, { n: 2 });
  await connectedOver(page, "websocket", 40000); // the first retry comes after 15-30 s
  await publish(channel, { n: 3 });
  assert.deepEqual(await gotAll(page, 3), [1, 2, 3]);
  await context.close();
});

test("recovers after the network goes offline and comes back", async () => {
  const channel = "/t/offline";
  const { context, page } = await openClient({ channel });
  await connectedOver(page, "websocket", 10000);
  await publish(channel, { n: 1 });
  await gotAll(page, 1);
  await context.setOffline(true);
  await waitFor(() => page.evaluate(() => window.states.at(-1).state === "connecting"), 10000,
    "the client to notice it is offline");
  for (let n = 2; n <= 6; n++) await publish(channel, { n });
  await sleep(1000);
  assert.deepEqual(await page.evaluate(() => window.got), [1]);
  const back = Date.now();
  await context.setOffline(false);
  const t = await connectedOver(page, "websocket", 10000);
  assert.ok(t - back < 3000, `reconnected ${t - back} ms after coming online`); // at once, not after a backoff
  await publish(channel, { n: 7 });
  assert.deepEqual(await gotAll(page, 7), range(1, 7));
  await context.close();
});

test("makes at most 3 attempts a second, and far fewer over time, against a dead server", async () => {
  const port = await new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
  const { context, page } = await openClient({ origin: `http://127.0.0.1:${port}`, channel: "/t/dead" });
  await sleep(20000);
  const { attempts, states } = await page.evaluate(() => ({ attempts: window.attempts, states: window.states }));
  const cycles = attempts.filter((a) => a.kind === "websocket");
  // docs/client.md: a cycle tries each transport once; cycles are at least 1 s apart
  // (the floor) and their gaps grow (full jitter over 1 s * 2^failures, up to 30 s).
  assert.ok(cycles.length >= 2, `${cycles.length} cycles: it keeps trying`);
  assert.ok(attempts.length <= 3 * (20 + 1), `${attempts.length} attempts in 20 s`);
  for (let i = 1; i < cycles.length; i++) assert.ok(cycles[i].t - cycles[i - 1].t >= 950, "a gap under the floor");
  assert.ok(cycles.length <= 12, `${cycles.length} cycles in 20 s: no backoff`);
  assert.ok(!states.some((s) => s.state === "connected"));
  console.log(`dead server: ${attempts.length} attempts (${cycles.length} cycles) in 20 s`);
  await context.close();
});

test("close() stops and leaves no timer or page listener behind", async () => {
  const { context, page } = await openClient({ channel: "/t/close" });
  await connectedOver(page, "websocket", 10000);
  const during = await page.evaluate(() => ({ timers: window.liveTimers.size, listeners: window.liveListeners }));
  assert.ok(during.timers > 0 && during.listeners > 0, JSON.stringify(during)); // the instrument sees them
  const left = await page.evaluate(async () => {
    window.client.close();
    await new Promise((r) => queueMicrotask(r));
    return { timers: window.liveTimers.size, listeners: window.liveListeners, states: window.states.at(-1) };
  });
  assert.deepEqual({ timers: left.timers, listeners: left.listeners }, { timers: 0, listeners: 0 });
  assert.equal(left.states.state, "disconnected");
  await publish("/t/close", { n: 1 });
  await sleep(1000);
  assert.deepEqual(await page.evaluate(() => ({ got: window.got, attempts: window.attempts.length })),
    { got: [], attempts: 1 });
  await context.close();
});
