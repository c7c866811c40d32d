// What the browser tests share: a headless Chromium (Debian's, never a download), the
// supervisor that tests/browser/run.py started for this file, and waiting on conditions.
import { execFileSync } from "node:child_process";
import { chromium } from "playwright-core";

export const env = {
  httpPort: Number(process.env.DINGO_HTTP_PORT),
  adminPort: Number(process.env.DINGO_ADMIN_PORT),
  control: process.env.DINGO_CONTROL,
  bin: process.env.DINGO_BIN,
  dir: process.env.DINGO_DIR,
  artifacts: process.env.DINGO_ARTIFACTS,
};
export const gateway = `http://127.0.0.1:${env.httpPort}`;
export const admin = `http://127.0.0.1:${env.adminPort}`;

export async function launch() {
  return chromium.launch({
    executablePath: process.env.DINGO_CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
}

// dingoctl with the test supervisor's control socket; its stdout.
export function dingoctl(...args) {
  return execFileSync(`${env.bin}/dingoctl`, ["--socket", env.control, ...args], { encoding: "utf8", timeout: 10000 });
}

export function status() {
  return JSON.parse(dingoctl("status", "--json"));
}

// Polls `fn` every 50 ms until it returns a truthy value (returned) or `ms` pass (throws).
export async function waitFor(fn, ms, what) {
  const until = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// Publishes over REST (loopback may publish without a token); resolves to the position.
export async function publish(channel, data) {
  const r = await fetch(`${gateway}/v1/publish${channel}`, { method: "POST", body: JSON.stringify(data) });
  if (r.status !== 200) throw new Error(`publish ${channel}: ${r.status} ${await r.text()}`);
  return (await r.json()).position;
}
