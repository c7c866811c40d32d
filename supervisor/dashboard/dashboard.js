// The dingo dashboard (see index.html): renders the status document (the one
// `dingoctl status --json` prints) from GET /v1/status, then from the SSE stream
// /v1/status/stream (one `status` event a second). Reads nothing while the tab is
// hidden. Everything from the server goes into the page as text (textContent), never
// as markup: channel names come from clients.
"use strict";

const WINDOW_S = 300;          // sparklines show the last 5 minutes
const MIN_SPAN_S = 60;         // and at least a minute wide, while younger
const GAP_S = 5;               // a longer gap between samples breaks the line
const POLL_MS = 2000;          // while the stream is refused (503): poll /v1/status
const STREAM_RETRY_MS = 15000; // and try the stream again this often
const SVG = "http://www.w3.org/2000/svg";

let source = null;      // the EventSource, while visible
let pollTimer = null;
let retryTimer = null;
let updates = 0;        // status documents rendered (tests read data-updates)
const series = new Map();  // "id/pid" -> {seen, t: [], conns: [], rps: [], cpu: []}
const hubSeries = { t: [], rate: [] };
let lastHub = null;     // {published, uptime} of the previous document

// ---- formatting ------------------------------------------------------------------

function bytes(n) {
  const units = ["B", "K", "M", "G", "T"];
  let u = 0;
  n = Number(n) || 0;
  while (n >= 1024 && u < units.length - 1) { n /= 1024; ++u; }
  return u === 0 ? `${n.toFixed(0)}B` : `${n.toFixed(1)}${units[u]}`;
}

function duration(s) {
  s = Math.floor(Number(s) || 0);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  const pad = (v) => String(v).padStart(2, "0");
  if (d) return `${d}d${h}h`;
  if (h) return `${h}h${pad(m)}m`;
  if (m) return `${m}m${pad(s % 60)}s`;
  return `${s}s`;
}

function count(n) { return (Number(n) || 0).toLocaleString("en-US"); }
function fixed(n, digits) { return (Number(n) || 0).toFixed(digits); }

// ---- DOM helpers (text only) -----------------------------------------------------

function setText(id, value) {
  const el = document.getElementById(id);
  if (el) el.textContent = String(value);
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = String(text);
  if (className) td.className = className;
  return td;
}

function sparkCell(t, values, label) {
  const td = document.createElement("td");
  td.appendChild(sparkline(t, values, 120, 22, label));
  return td;
}

// An inline SVG of `values` at times `t` (seconds) over the last WINDOW_S (the last
// MIN_SPAN_S while it has less), scaled to its own maximum; a gap longer than GAP_S (a
// hidden tab, a lost stream) breaks the line.
function sparkline(t, values, width, height, label) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  const title = document.createElementNS(SVG, "title");
  const last = values.length ? values[values.length - 1] : 0;
  title.textContent = `${label}: ${fixed(last, 1)} now, max ${fixed(Math.max(0, ...values), 1)} (5 min)`;
  svg.appendChild(title);
  const base = document.createElementNS(SVG, "line");
  base.setAttribute("x1", 0); base.setAttribute("x2", width);
  base.setAttribute("y1", height - 0.5); base.setAttribute("y2", height - 0.5);
  svg.appendChild(base);
  if (!t.length) return svg;
  const now = t[t.length - 1];
  const span = Math.min(WINDOW_S, Math.max(MIN_SPAN_S, now - t[0]));
  const max = Math.max(1e-9, ...values);
  let points = [];
  const flush = () => {
    if (points.length > 1) {
      const line = document.createElementNS(SVG, "polyline");
      line.setAttribute("points", points.join(" "));
      svg.appendChild(line);
    }
    points = [];
  };
  for (let i = 0; i < t.length; ++i) {
    if (i > 0 && t[i] - t[i - 1] > GAP_S) flush();
    const x = width - ((now - t[i]) / span) * width;
    const y = height - 1 - (values[i] / max) * (height - 3);
    points.push(`${x.toFixed(1)},${y.toFixed(1)}`);
  }
  flush();
  return svg;
}

function push(s, now, fields) {
  s.t.push(now);
  for (const [k, v] of Object.entries(fields)) s[k].push(Number(v) || 0);
  while (s.t.length && now - s.t[0] > WINDOW_S) {
    s.t.shift();
    for (const k of Object.keys(fields)) s[k].shift();
  }
}

// ---- rendering -------------------------------------------------------------------

function render(st) {
  const now = Date.now() / 1000;
  setText("sup-pid", st.pid);
  setText("sup-version", st.version);
  setText("sup-uptime", duration(st.uptime_s));
  setText("sup-generation", st.generation);
  setText("sup-dispatch", st.dispatch);
  setText("sup-state", st.reloading ? `${st.state}, reloading` : st.state);
  setText("sup-adopted", st.adopted_total ?? 0);

  const listeners = document.querySelector("#listeners tbody");
  listeners.replaceChildren(...(st.listeners || []).map((l) => {
    const tr = document.createElement("tr");
    tr.append(cell(l.address), cell(l.tls ? "tls" : "plain"), cell(count(l.accepted), "num"));
    return tr;
  }));

  const h = st.handoff || {};
  for (const k of ["handed", "retries", "waited", "waiting", "dropped"]) setText(`ho-${k}`, count(h[k]));

  const auth = st.auth;
  document.getElementById("auth").hidden = !(auth && auth.enabled);
  if (auth && auth.enabled) {
    setText("auth-required", auth.required ? "required" : "optional");
    setText("auth-authenticated", count(auth.authenticated));
    setText("auth-anonymous", count(auth.anonymous));
  }

  renderWorkers(st.workers || [], now);
  renderHub(st.hub, st.uptime_s, now);
  // The bus: the local engine, or Redis and whether it is reachable.
  const bus = st.bus || {};
  let busText = bus.engine || "-";
  if (bus.engine === "redis" && st.hub) busText += `, ${count(st.hub.repaired || 0)} repaired, ${count(st.hub.gaps || 0)} gaps`;
  setText("hub-bus", bus.degraded ? `${busText}: DEGRADED` : busText);
  document.getElementById("hub-bus").classList.toggle("bad", !!bus.degraded);

  ++updates;
  document.documentElement.dataset.updates = String(updates);
  setText("updated", `updated ${new Date().toLocaleTimeString()}`);
}

function renderWorkers(workers, now) {
  const rows = [];
  for (const w of workers) {
    const key = `${w.id}/${w.pid}`;
    let s = series.get(key);
    if (!s) series.set(key, (s = { seen: now, t: [], conns: [], rps: [], cpu: [] }));
    s.seen = now;
    if (w.pid > 0) push(s, now, { conns: w.connections, rps: w.requests_per_s, cpu: w.cpu_percent });

    const tr = document.createElement("tr");
    tr.className = "worker";
    tr.dataset.worker = String(w.id);
    tr.dataset.pid = String(w.pid);
    const probe = typeof w.last_probe_ms === "number" ? `${fixed(w.last_probe_ms, 1)} ms` : "-";
    tr.append(
      cell(w.id), cell(w.state, `state state-${String(w.state).replace(/[^a-z]/g, "")}`), cell(w.pid, "pid"),
      cell(w.generation),
      cell(count(w.connections), "num"), sparkCell(s.t, s.conns, "connections"),
      cell(fixed(w.requests_per_s, 1), "num"), sparkCell(s.t, s.rps, "requests/s"),
      cell(bytes(w.bytes_in), "num"), cell(bytes(w.bytes_out), "num"), cell(bytes(w.rss_bytes), "num"),
      cell(fixed(w.cpu_percent, 1), "num"), sparkCell(s.t, s.cpu, "CPU %"),
      cell(w.restarts, "num"), cell(probe, "num"), cell(w.adopted ? "yes" : "no"));
    rows.push(tr);
  }
  document.querySelector("#workers tbody").replaceChildren(...rows);
  for (const [key, s] of series) if (now - s.seen > WINDOW_S) series.delete(key);
}

function renderHub(hub, uptime, now) {
  document.getElementById("hub-section").hidden = !hub;
  if (!hub) return;
  setText("hub-channels", count(hub.channels));
  setText("hub-published", count(hub.published));
  setText("hub-history", `${count(hub.history_messages)} messages, ${bytes(hub.history_bytes)}`);
  setText("hub-links", count(hub.links));
  // published/s from the last two documents (the supervisor's uptime is their clock).
  let rate = null;
  if (lastHub && uptime > lastHub.uptime && hub.published >= lastHub.published)
    rate = (hub.published - lastHub.published) / (uptime - lastHub.uptime);
  lastHub = { published: hub.published, uptime };
  setText("hub-rate", rate === null ? "-" : fixed(rate, 1));
  if (rate !== null) push(hubSeries, now, { rate });
  document.getElementById("hub-spark").replaceChildren(sparkline(hubSeries.t, hubSeries.rate, 360, 40, "published/s"));

  const top = hub.top_channels || [];
  document.querySelector("#top-channels tbody").replaceChildren(...top.map((c) => {
    const tr = document.createElement("tr");
    tr.append(cell(c.channel, "channel"), cell(count(c.subscribers), "num"));
    return tr;
  }));
  document.getElementById("top-empty").hidden = top.length > 0;
}

// ---- feeding ---------------------------------------------------------------------

function setConn(state, text) {
  const el = document.getElementById("conn");
  el.className = `conn ${state}`;
  el.textContent = text;
}

async function fetchOnce() {
  try {
    const r = await fetch("/v1/status", { cache: "no-store" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    render(await r.json());
    return true;
  } catch (e) {
    setConn("down", `unreachable (${e.message})`);
    return false;
  }
}

function openStream() {
  if (source || document.visibilityState === "hidden") return;
  source = new EventSource("/v1/status/stream");
  source.addEventListener("status", (e) => render(JSON.parse(e.data)));
  source.addEventListener("open", () => {
    clearInterval(pollTimer);
    pollTimer = null;
    setConn("live", "live");
  });
  source.addEventListener("error", () => {
    if (source && source.readyState === EventSource.CLOSED) {
      // Refused (503: too many streams) or not a stream: poll, and try again later.
      source = null;
      setConn("down", "stream refused; polling");
      if (!pollTimer) pollTimer = setInterval(fetchOnce, POLL_MS);
      clearTimeout(retryTimer);
      retryTimer = setTimeout(openStream, STREAM_RETRY_MS);
    } else {
      setConn("down", "reconnecting");  // EventSource retries by itself
    }
  });
}

function stop() {
  if (source) source.close();
  source = null;
  clearInterval(pollTimer);
  clearTimeout(retryTimer);
  pollTimer = retryTimer = null;
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "hidden") {
    stop();
    setConn("paused", "paused (tab hidden)");
  } else {
    setConn("", "connecting");
    openStream();  // its first event comes at once
  }
});

if (document.visibilityState === "hidden") setConn("paused", "paused (tab hidden)");
else fetchOnce().then(openStream);
