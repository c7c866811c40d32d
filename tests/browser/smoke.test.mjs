// The set-up works: Debian's Chromium, driven by playwright-core, reaches the real gateway
// and sees a message published over REST arrive over the gateway's SSE stream.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { gateway, launch, publish, waitFor } from "./harness.mjs";

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test("a page on the gateway's origin receives a publish over SSE", async () => {
  const page = await browser.newPage();
  await page.goto(`${gateway}/healthz`);
  assert.match(await page.textContent("body"), /"status":"ok"/);
  await page.evaluate(() => {
    window.got = [];
    const es = new EventSource("/v1/sse?channel=/smoke");
    es.addEventListener("message", (e) => window.got.push(JSON.parse(e.data)));
    window.es = es;
  });
  await waitFor(() => page.evaluate(() => window.es.readyState === 1), 5000, "the event stream open");
  const position = await publish("/smoke", { n: 1 });
  const got = await waitFor(() => page.evaluate(() => window.got[0]), 5000, "the message in the page");
  assert.equal(got.position, position);
  assert.deepEqual(got.data, { n: 1 });
});
