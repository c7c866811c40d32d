// The browser client with tokens (run.py --auth: [auth] required = true, an ES256 key made
// for the run, expiring_notice = 2s): getToken supplies the token on every transport,
// token_expiring is answered with a refresh on the same WebSocket, and a token the server
// refuses leads to a new one from getToken.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { env, gateway, launch, publish, waitFor } from "./harness.mjs";

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const key = crypto.createPrivateKey(fs.readFileSync(path.join(env.dir, "jwt-es256.key")));
const b64u = (x) => Buffer.from(x).toString("base64url");

// An ES256 JWT for `sub` that expires in `ttl` seconds (or is signed by another key).
function mint(ttl, { sub = "alice", forged = false } = {}) {
  const head = b64u(JSON.stringify({ alg: "ES256", typ: "JWT" }));
  const body = b64u(JSON.stringify({ sub, exp: Math.floor(Date.now() / 1000) + ttl,
    channels: { subscribe: ["/*"], publish: ["/*"] } }));
  const signer = forged ? crypto.generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey : key;
  const sig = crypto.sign("sha256", Buffer.from(`${head}.${body}`), { key: signer, dsaEncoding: "ieee-p1363" });
  return `${head}.${body}.${b64u(sig)}`;
}

// A page whose client gets its tokens from `tokens` (called with the count so far), and
// counts its WebSockets and what they send.
async function openClient(channel, transports, tokens) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const seen = { calls: 0, sockets: 0, sent: [], bearer: [] };
  page.on("request", (r) => { if (r.url().includes("/v1/publish/")) seen.bearer.push(r.headers().authorization); });
  await page.exposeFunction("nextToken", () => tokens(seen.calls++));
  page.on("websocket", (ws) => {
    seen.sockets++;
    ws.on("framesent", (f) => seen.sent.push(String(f.payload)));
  });
  await page.goto(`${gateway}/healthz`);
  await page.evaluate(async ({ channel, transports }) => {
    const { connect } = await import("/v1/client.js");
    window.states = [];
    window.got = [];
    const client = (window.client = connect(location.origin, { transports, getToken: () => window.nextToken() }));
    client.on("state", (s) => window.states.push(s));
    client.subscribe(channel).on("message", (m) => window.got.push(m.data.n));
  }, { channel, transports });
  return { context, page, seen };
}

const connected = (page, transport) => waitFor(() => page.evaluate((t) => {
  const s = window.states.at(-1);
  return s?.state === "connected" && s.transport === t;
}, transport), 10000, `connected over ${transport}`);

test("token_expiring is answered with a refresh from getToken, on the same WebSocket", async () => {
  // The first token expires in 4 s, so token_expiring comes after about 2 s.
  const { context, page, seen } = await openClient("/a/refresh", ["websocket"], (n) => mint(n === 0 ? 4 : 3600));
  await connected(page, "websocket");
  await publish("/a/refresh", { n: 1 });
  await waitFor(() => page.evaluate(() => window.got.length === 1), 5000, "the first message");
  await waitFor(() => seen.sent.some((f) => f.includes('"op":"refresh"')), 8000, "a refresh command");
  await new Promise((r) => setTimeout(r, 4000)); // past the first token's exp
  await publish("/a/refresh", { n: 2 });
  await waitFor(() => page.evaluate(() => window.got.length === 2), 5000, "a message after the first exp");
  assert.equal(seen.sockets, 1, "no reconnect");
  assert.equal(seen.calls, 2);
  assert.ok(seen.sent[0].includes('"op":"auth"'), "auth is the first command");
  assert.deepEqual(await page.evaluate(() => window.states.map((s) => s.state)), ["connected"]);
  await context.close();
});

test("a refused token (close 4001) is replaced with a new one from getToken", async () => {
  const { context, page, seen } = await openClient("/a/forged", ["websocket"], (n) => mint(3600, { forged: n === 0 }));
  await connected(page, "websocket");
  assert.equal(seen.calls, 2);
  assert.equal(seen.sockets, 2);
  await publish("/a/forged", { n: 1 });
  await waitFor(() => page.evaluate(() => window.got.length === 1), 5000, "a message");
  await context.close();
});

for (const transport of ["sse", "poll"]) {
  test(`getToken's token goes with ${transport}, and REST publish sends it as Bearer`, async () => {
    const channel = `/a/${transport}`;
    const { context, page, seen } = await openClient(channel, [transport], () => mint(3600));
    await connected(page, transport);
    await waitFor(() => page.evaluate(() => window.client.debug().channels === 1), 5000, "the subscription");
    await new Promise((r) => setTimeout(r, 300));
    const position = await page.evaluate((c) => window.client.publish(c, { n: 1 }), channel);
    assert.match(position, /\.1$/);
    await waitFor(() => page.evaluate(() => window.got.length === 1), 5000, "the message");
    assert.equal(seen.calls, 1);
    assert.equal(seen.bearer.length, 1);
    assert.match(seen.bearer[0], /^Bearer ey/);
    await context.close();
  });
}
