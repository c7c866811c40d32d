// The dashboard on the admin listener (GET /): it shows both workers with the pids that
// `dingoctl status --json` reports, follows a worker killed with SIGKILL to its
// replacement without a reload, lists a channel with subscribers among the top
// channels, and reads nothing while the tab is hidden. Screenshots go to
// DINGO_ARTIFACTS; with DINGO_UPDATE_DOCS=1 the last one also to docs/img/dashboard.png.
import assert from "node:assert/strict";
import { copyFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { admin, env, gateway, launch, publish, status, waitFor } from "./harness.mjs";

let browser;
let page;
before(async () => {
  browser = await launch();
  page = await browser.newPage({ viewport: { width: 1500, height: 820 } });
  await page.goto(`${admin}/`);
});
after(async () => { await browser?.close(); });

async function shot(name) {
  const file = path.join(env.artifacts, `dashboard-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

// {worker id: pid} as the page shows them (every row, retired workers included).
function pagePids() {
  return page.$$eval("#workers tbody tr.worker", (rows) => rows.map((r) => ({ id: Number(r.dataset.worker),
    pid: Number(r.querySelector("td.pid").textContent), state: r.querySelector("td.state").textContent })));
}

const updates = () => page.evaluate(() => Number(document.documentElement.dataset.updates || 0));
const adminStreams = () => status().admin.streams;

test("the page is served with a strict policy and renders both workers' pids", async () => {
  const r = await fetch(`${admin}/`);
  assert.equal(r.headers.get("content-type"), "text/html; charset=utf-8");
  assert.match(r.headers.get("content-security-policy"), /default-src 'none'; script-src 'self'/);
  const want = status().workers.filter((w) => w.state === "ready").map((w) => ({ id: w.id, pid: w.pid }));
  assert.equal(want.length, 2);
  const shown = await waitFor(async () => {
    const rows = await pagePids();
    return want.every((w) => rows.some((r) => r.id === w.id && r.pid === w.pid)) && rows;
  }, 5000, "both workers' rows with their pids");
  assert.equal(shown.filter((r) => r.state === "ready").length, 2);
  assert.equal(await page.textContent("#sup-pid"), String(status().pid));
  assert.equal(await page.textContent("#hub-bus"), "local");  // the engine, not degraded
  await shot("workers");
});

test("after kill -9 of a worker, its replacement's pid appears without a reload", async () => {
  await waitFor(async () => (await adminStreams()) === 1, 5000, "the page's status stream open");
  const before = status().workers.find((w) => w.id === 0 && w.state === "ready");
  const navigations = [];
  page.on("framenavigated", (f) => navigations.push(f.url()));
  const killedAt = Date.now();
  process.kill(before.pid, "SIGKILL");
  const row = await waitFor(async () => (await pagePids()).find((r) => r.id === 0 && r.pid > 0 && r.pid !== before.pid),
    10000, "a new pid for worker 0 on the page");
  const took = Date.now() - killedAt;
  assert.equal(navigations.length, 0, "the page was not reloaded");
  const now = status().workers.find((w) => w.id === 0 && w.pid === row.pid);
  assert.ok(now, `pid ${row.pid} is worker 0's in dingoctl status too`);
  await waitFor(async () => (await pagePids()).some((r) => r.id === 0 && r.pid === row.pid && r.state === "ready"),
    10000, "the replacement ready on the page");
  console.log(`new pid ${row.pid} on the page ${took} ms after the kill`);
  await shot("after-kill");
});

test("a channel with subscribers is among the top channels", async () => {
  const other = await browser.newPage();
  await other.goto(`${gateway}/healthz`);
  await other.evaluate(() => {
    window.streams = [1, 2, 3].map(() => new EventSource("/v1/sse?channel=/rooms/lobby"));
    window.streams.push(new EventSource("/v1/sse?channel=/rooms/quiet"));
  });
  await waitFor(() => other.evaluate(() => window.streams.every((s) => s.readyState === 1)), 5000, "4 SSE streams open");
  for (let i = 0; i < 20; ++i) await publish("/rooms/lobby", { n: i });
  const rows = await waitFor(async () => {
    const r = await page.$$eval("#top-channels tbody tr", (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
    return r.length >= 2 && r;
  }, 10000, "the channels in the top list");
  assert.deepEqual(rows.slice(0, 2), [["/rooms/lobby", "3"], ["/rooms/quiet", "1"]]);
  const last = await shot("top-channels");
  if (process.env.DINGO_UPDATE_DOCS === "1")
    copyFileSync(last, path.join(import.meta.dirname ?? path.dirname(new URL(import.meta.url).pathname),
      "..", "..", "docs", "img", "dashboard.png"));
  await other.close();
});

test("the page reads nothing while hidden and resumes when visible", async () => {
  await waitFor(async () => (await adminStreams()) === 1, 5000, "the page's status stream open");
  const setVisibility = (state) => page.evaluate((s) => {
    Object.defineProperty(document, "visibilityState", { configurable: true, get: () => s });
    Object.defineProperty(document, "hidden", { configurable: true, get: () => s === "hidden" });
    document.dispatchEvent(new Event("visibilitychange"));
  }, state);
  let requests = 0;
  const count = () => ++requests;
  page.on("request", count);

  await setVisibility("hidden");
  await waitFor(async () => (await adminStreams()) === 0, 5000, "the stream closed by the server's count");
  const frozen = await updates();
  await new Promise((r) => setTimeout(r, 3000));
  assert.equal(await updates(), frozen, "no status rendered while hidden");
  assert.equal(requests, 0, "no request while hidden");
  assert.equal(await adminStreams(), 0);
  await shot("hidden");

  await setVisibility("visible");
  await waitFor(async () => (await adminStreams()) === 1, 5000, "the stream open again");
  await waitFor(async () => (await updates()) >= frozen + 2, 5000, "updates again");
  page.off("request", count);
  assert.ok(requests >= 1);
});
