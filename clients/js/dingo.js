// dingo's browser client: connect() to a gateway, subscribe to channels and publish, over
// WebSocket or, when that fails or hangs, SSE then long-polling. An ES module with no
// dependencies and no build step; every gateway serves it at /v1/client.js. The contract
// is SPEC section 3, "Browser client"; docs/client.md explains the policies and numbers.
//
// Map: timing constants; positions and listeners; connect() holds the client: the
// connection cycle (try each transport in order, then back off), the three transports
// (each an object with close/sync/check/tick), delivery (dedupe by position per channel),
// tokens, and the page hooks (online, visibility, a wall-clock ticker).

// Every delay and limit, in milliseconds.
const T = {
  open: 5000, // a WebSocket or event stream that has not opened by then has failed
  firstReply: 3000, // a WebSocket that opened but has not answered its first command by then hangs
  ping: 20000, // silence on a WebSocket before we ping it
  pingTimeout: 5000, // a ping (or a check after sleep) unanswered this long: the connection is dead
  tick: 5000, // the ticker; a gap over 3 ticks means the page slept or was throttled
  floor: 1000, // reconnect delay: floor + random(0, min(cap, base * 2^failures))
  base: 1000,
  cap: 30000,
  stable: 10000, // a connection up this long resets the failure count
  wsRetry: 15000, // on a fallback, try the WebSocket again after 1-2x this, doubling while it fails
  wsRetryCap: 300000,
  request: 10000, // a poll that should answer at once, or a REST publish
  hold: 40000, // a held poll (the server holds up to its poll_timeout, 25 s by default)
  tokenMargin: 30000, // a token expiring within this is replaced (getToken) before use
};
const ALL = ["websocket", "sse", "poll"];
const CHANNEL = /^\/[A-Za-z0-9_.:/-]{0,254}$/;

// True when position `a` ("EPOCH.SEQ") comes after `b` (or `b` is unknown, or of another
// epoch: a new life of the channel, announced by a subscribe answer).
function newer(a, b) {
  if (!b) return true;
  const i = a.indexOf("."), j = b.indexOf(".");
  if (a.slice(0, i) !== b.slice(0, j)) return true;
  const x = a.slice(i + 1), y = b.slice(j + 1);
  return x.length !== y.length ? x.length > y.length : x > y;
}

// Listeners by event name; on() returns the remover.
function emitter() {
  let map = new Map();
  return {
    on(event, fn) {
      const entry = { fn };
      if (!map.has(event)) map.set(event, new Set());
      map.get(event).add(entry);
      return () => map.get(event)?.delete(entry);
    },
    emit(event, value) {
      for (const entry of [...(map.get(event) || [])]) {
        try {
          entry.fn(value);
        } catch (e) {
          queueMicrotask(() => { throw e; }); // reported, without breaking the client
        }
      }
    },
    clear() { map = new Map(); },
    size() { let n = 0; for (const s of map.values()) n += s.size; return n; },
  };
}

function tokenExpiresSoon(token) {
  try {
    const claims = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return typeof claims.exp === "number" && claims.exp * 1000 - Date.now() < T.tokenMargin;
  } catch {
    return false;
  }
}

export function connect(origin, options = {}) {
  const base = String(origin || globalThis.location?.origin || "").replace(/\/+$/, "");
  const wsUrl = base.replace(/^http/, "ws") + "/v1/ws";
  const transports = (options.transports || ALL).filter((t) => ALL.includes(t));
  if (!transports.length) throw new TypeError("dingo: no known transport in options.transports");
  const getToken = options.getToken;
  let token = options.token || null;
  let needFreshToken = false;

  const events = emitter();
  const channels = new Map(); // name -> {pos, ready, subs: Set of emitters}
  const timers = new Set();
  let state = "connecting", transport = null, closed = false;
  let conn = null; // the transport object in use or being tried
  let generation = 0; // bumps at each cycle: callbacks of older ones are ignored
  let failures = 0, lastGood = 0, upAt = 0, retryTimer = null;
  let probe = null, probeTimer = null, wsRetry = T.wsRetry;

  const later = (fn, ms) => {
    const id = setTimeout(() => { timers.delete(id); fn(); }, ms);
    timers.add(id);
    return id;
  };
  const cancel = (id) => { if (id != null) { clearTimeout(id); timers.delete(id); } };

  function setState(s, t) {
    if (s === state && t === transport) return;
    state = s;
    transport = t;
    events.emit("state", { state: s, transport: t });
  }

  async function currentToken() {
    if (getToken && (needFreshToken || (!token && !options.token) || (token && tokenExpiresSoon(token)))) {
      token = await getToken();
      needFreshToken = false;
    }
    return token;
  }

  // ---- delivery ------------------------------------------------------------------------

  function deliver(m) {
    const e = channels.get(m.channel);
    if (!e || !e.ready || !newer(m.position, e.pos)) return; // once, in order
    e.pos = m.position;
    for (const s of [...e.subs]) s.emit("message", m);
  }

  // A transport (re)established channel `name` at `position`; `messages` are the missed ones.
  function established(name, position, recovered, messages) {
    const e = channels.get(name);
    if (!e) return;
    const announce = !e.ready || !recovered;
    e.ready = true;
    if (announce) for (const s of [...e.subs]) s.emit("subscribed", { channel: name, position, recovered });
    for (const m of messages) deliver(m);
    if (newer(position, e.pos)) e.pos = position;
  }

  // ---- the connection cycle ------------------------------------------------------------

  function backoff() {
    const delay = T.floor + Math.random() * Math.min(T.cap, T.base * 2 ** Math.min(failures, 16));
    failures++;
    return delay;
  }

  function schedule(ms) {
    cancel(retryTimer);
    setState("connecting", null);
    retryTimer = later(() => { retryTimer = null; cycle(); }, ms);
  }

  async function cycle() {
    if (closed) return;
    const gen = ++generation;
    setState("connecting", null);
    let tk;
    try {
      tk = await currentToken();
    } catch {
      if (gen === generation) schedule(backoff());
      return;
    }
    if (closed || gen !== generation) return;
    const order = transports.slice(lastGood).concat(transports.slice(0, lastGood));
    attempt(order, 0, tk, gen);
  }

  function attempt(order, k, tk, gen) {
    if (k >= order.length) { // every transport failed
      lastGood = 0;
      schedule(backoff());
      return;
    }
    const kind = order[k];
    for (const e of channels.values()) e.ready = false;
    const owner = {
      live: () => !closed && gen === generation && conn === c,
      up() {
        if (!owner.live()) return;
        lastGood = transports.indexOf(kind);
        upAt = Date.now();
        setState("connected", kind);
        if (kind !== "websocket") scheduleProbe();
      },
      fail() { // failed before it was up: the next transport, now
        if (!owner.live()) return;
        conn = null;
        attempt(order, k + 1, tk, gen);
      },
      down(afterMs) { // was up, is lost
        if (!owner.live()) return;
        conn = null;
        if (Date.now() - upAt >= T.stable) failures = 0;
        if (afterMs != null) schedule(afterMs);
        else schedule(backoff());
      },
      unauthorized() {
        if (!owner.live()) return;
        conn = null;
        if (!getToken) return stop("unauthorized");
        needFreshToken = true;
        schedule(backoff());
      },
      stop(reason) { if (owner.live()) stop(reason); },
    };
    const c = (kind === "websocket" ? webSocket : kind === "sse" ? eventStream : longPoll)(owner, tk);
    conn = c;
    c.start();
  }

  function stop(reason) {
    conn?.close();
    conn = null;
    generation++;
    cancel(retryTimer);
    closeProbe();
    if (!closed) {
      state = "disconnected";
      transport = null;
      events.emit("state", { state, transport, reason });
    }
  }

  // On a fallback, try the WebSocket again now and then; when it answers, move to it.
  function scheduleProbe() {
    if (!transports.includes("websocket") || probeTimer != null || probe) return;
    probeTimer = later(() => {
      probeTimer = null;
      if (closed || state !== "connected" || transport === "websocket") return;
      let ws;
      const done = (ok) => {
        if (probe !== ws) return;
        closeProbe();
        if (!ok) {
          wsRetry = Math.min(T.wsRetryCap, wsRetry * 2);
          scheduleProbe();
        } else if (!closed && state === "connected" && transport !== "websocket") {
          wsRetry = T.wsRetry;
          conn?.close();
          conn = null;
          lastGood = transports.indexOf("websocket");
          cycle();
        }
      };
      try {
        probe = ws = new WebSocket(wsUrl);
      } catch {
        return done(false);
      }
      probe.timer = later(() => done(false), T.open + T.firstReply);
      ws.onopen = () => ws.send(JSON.stringify({ id: 1, op: "ping" }));
      ws.onmessage = (e) => done(/"ok":true/.test(e.data));
      ws.onclose = () => done(false);
    }, wsRetry * (1 + Math.random()));
  }

  function closeProbe() {
    cancel(probeTimer);
    probeTimer = null;
    if (!probe) return;
    cancel(probe.timer);
    probe.onopen = probe.onmessage = probe.onclose = null;
    probe.close();
    probe = null;
  }

  // ---- WebSocket -----------------------------------------------------------------------

  function webSocket(owner, tk) {
    let ws, up = false, nextId = 1, heard = Date.now(), pingTimer = null, openTimer = null, after = null;
    const pending = new Map(); // id -> callback(reply or null when the connection is gone)

    function send(cmd, cb) {
      cmd.id = nextId++;
      if (cb) pending.set(cmd.id, cb);
      ws.send(JSON.stringify(cmd));
    }
    function finish() { // detaches and closes; the owner is told by the caller
      cancel(openTimer);
      cancel(pingTimer);
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(); } catch {}
      for (const cb of pending.values()) cb(null);
      pending.clear();
    }
    function lost() {
      finish();
      up ? owner.down(after) : owner.fail();
    }
    function subscribe(name) {
      const e = channels.get(name);
      const cmd = { op: "subscribe", channel: name };
      if (e.pos) cmd.since = e.pos;
      send(cmd, (r) => {
        if (!r || channels.get(name) !== e) return;
        if (r.ok) return established(name, r.position, r.recovered, r.messages || []);
        channels.delete(name);
        for (const s of [...e.subs]) s.emit("error", r.error);
      });
    }
    function ping(timeout) {
      if (pingTimer != null) return;
      pingTimer = later(lost, timeout);
      send({ op: "ping" }, (r) => { if (r) { cancel(pingTimer); pingTimer = null; } });
    }

    return {
      kind: "websocket",
      start() {
        try {
          ws = new WebSocket(wsUrl);
        } catch {
          ws = {};
          return owner.fail();
        }
        openTimer = later(lost, T.open);
        ws.onopen = () => {
          cancel(openTimer);
          openTimer = later(lost, T.firstReply);
          send(tk ? { op: "auth", token: tk } : { op: "ping" }, (r) => {
            if (!r || !r.ok) return; // refused: the close (4001) follows
            cancel(openTimer);
            up = true;
            owner.up();
            for (const name of channels.keys()) subscribe(name);
          });
        };
        ws.onmessage = (ev) => {
          heard = Date.now();
          let m;
          try { m = JSON.parse(ev.data); } catch { return; }
          if (m.id != null) {
            const cb = pending.get(m.id);
            pending.delete(m.id);
            cb?.(m);
          } else if (m.event === "message") deliver(m);
          else if (m.event === "reconnect") after = m.after_ms;
          else if (m.event === "token_expiring" && getToken) {
            getToken().then((t) => {
              token = t;
              if (ws.readyState === 1 && ws.onmessage) send({ op: "refresh", token: t });
            }, () => {});
          }
        };
        ws.onclose = (ev) => {
          if (ev.code === 4003) { finish(); return owner.stop("disconnected by the server"); }
          if (ev.code === 4001) { finish(); return owner.unauthorized(); }
          lost();
        };
      },
      close: finish,
      sync(name, add) {
        if (!up) return;
        if (add) subscribe(name);
        else send({ op: "unsubscribe", channel: name });
      },
      check() { if (up) ping(T.pingTimeout); },
      tick(now) { if (up && now - heard >= T.ping) ping(T.pingTimeout); },
      publish(channel, data) {
        if (!up) return null;
        return new Promise((resolve, reject) =>
          send({ op: "publish", channel, data }, (r) => {
            if (!r) reject(new Error("dingo: the connection was lost before the publish was answered"));
            else if (r.ok) resolve(r.position);
            else reject(Object.assign(new Error(`dingo: ${r.error?.code}: ${r.error?.message}`), { code: r.error?.code }));
          }));
      },
    };
  }

  // ---- SSE and long-polling: query strings, answers --------------------------------------

  // Whether the gateway answers at all (an opaque answer is enough: no CORS needed).
  async function reachable() {
    const ctrl = new AbortController();
    const timer = later(() => ctrl.abort(), T.request);
    try {
      await fetch(`${base}/healthz`, { mode: "no-cors", cache: "no-store", signal: ctrl.signal });
      return true;
    } catch {
      return false;
    } finally {
      cancel(timer);
    }
  }

  // ---- query strings of SSE and long-polling -------------------------------------------

  function streamQuery(names, tk, withSince) {
    const q = new URLSearchParams();
    for (const n of names) q.append("channel", n);
    if (withSince) for (const n of names) { const p = channels.get(n).pos; if (p) q.append("since", `${n}@${p}`); }
    if (tk) q.set("token", tk);
    return q;
  }

  // Per channel of a stream answer: resumed when the whole answer was, or when the position
  // we sent came back or messages followed it.
  function establishAll(d, sent, messages) {
    for (const name of Object.keys(d.positions || {})) {
      const own = messages.filter((m) => m.channel === name);
      established(name, d.positions[name], d.recovered || own.length > 0 || d.positions[name] === sent[name], own);
    }
  }

  // ---- SSE -----------------------------------------------------------------------------

  function eventStream(owner, tk) {
    let es = null, up = false, openTimer = null, gen = 0;

    function stopStream() {
      cancel(openTimer);
      if (es) { es.onerror = null; es.close(); es = null; }
    }
    async function open() {
      stopStream();
      const mine = ++gen;
      const names = [...channels.keys()];
      if (!names.length) return idle(mine);
      try { tk = await currentToken(); } catch { return lost(); }
      if (mine !== gen || !owner.live()) return;
      const sent = {};
      for (const n of names) sent[n] = channels.get(n).pos;
      es = new EventSource(`${base}/v1/sse?${streamQuery(names, tk, true)}`);
      openTimer = later(lost, T.open);
      es.addEventListener("state", (ev) => {
        cancel(openTimer);
        const d = JSON.parse(ev.data);
        if (!up) { up = true; owner.up(); }
        establishAll(d, sent, []);
      });
      es.addEventListener("message", (ev) => deliver(JSON.parse(ev.data)));
      es.addEventListener("reconnect", (ev) => {
        stopStream();
        owner.down(JSON.parse(ev.data).after_ms);
      });
      es.onerror = lost; // we reconnect ourselves, with positions and backoff
    }
    async function idle(mine) { // nothing to stream: up when the server answers at all
      if (up) return;
      const ok = await reachable();
      if (mine !== gen || !owner.live()) return;
      if (!ok) return lost();
      up = true;
      owner.up();
    }
    function lost() {
      stopStream();
      gen++;
      up ? owner.down() : owner.fail();
    }
    return {
      kind: "sse",
      start: open,
      close() { gen++; stopStream(); },
      sync() { if (up) queueMicrotask(() => { if (owner.live()) open(); }); },
      check() { if (up) open(); }, // after sleep: a fresh stream, resumed from the positions
      tick() {},
      publish: () => null,
    };
  }

  // ---- long-polling --------------------------------------------------------------------

  function longPoll(owner, tk) {
    let up = false, stopped = false, ctrl = null, cursor = null, cursorKey = "", restart = false, running = false;

    async function loop() {
      if (running) return;
      running = true;
      try {
        while (!stopped && owner.live()) {
          const names = [...channels.keys()];
          if (!names.length) {
            if (!up && !(await reachable())) return lost();
            if (!up && !stopped && owner.live()) { up = true; owner.up(); }
            return;
          }
          const key = names.join(" ");
          const useCursor = cursor && key === cursorKey;
          try { tk = await currentToken(); } catch { return lost(); }
          const q = streamQuery(names, tk, !useCursor);
          if (useCursor) q.set("cursor", cursor);
          const sent = {};
          for (const n of names) sent[n] = channels.get(n).pos;
          ctrl = new AbortController();
          const timer = later(() => ctrl.abort(), useCursor ? T.hold : T.request);
          let r, d;
          try {
            r = await fetch(`${base}/v1/poll?${q}`, { signal: ctrl.signal, cache: "no-store" });
            d = r.ok ? await r.json() : null;
          } catch {
            r = null;
          } finally {
            cancel(timer);
          }
          if (stopped) return;
          if (restart) { restart = false; continue; }
          if (r?.status === 401) return owner.unauthorized();
          if (!d) return lost();
          if (!up) { up = true; owner.up(); }
          establishAll(d, sent, d.messages || []);
          cursor = d.cursor;
          cursorKey = key;
        }
      } finally {
        running = false;
      }
    }
    function lost() {
      stopped = true;
      up ? owner.down() : owner.fail();
    }
    function again() {
      restart = true;
      ctrl?.abort();
      if (!running) { restart = false; loop(); }
    }
    return {
      kind: "poll",
      start: loop,
      close() { stopped = true; ctrl?.abort(); },
      sync: () => queueMicrotask(() => { if (!stopped && owner.live()) again(); }),
      check() { if (up) again(); },
      tick() {},
      publish: () => null,
    };
  }

  // ---- the page ------------------------------------------------------------------------

  const hooks = [];
  function hook(target, event, fn) {
    if (!target?.addEventListener) return;
    target.addEventListener(event, fn);
    hooks.push(() => target.removeEventListener(event, fn));
  }
  hook(globalThis, "online", () => {
    if (closed || state === "disconnected") return;
    if (state === "connected") return conn?.check();
    failures = 0; // a new network: start over at once
    cancel(retryTimer);
    retryTimer = null;
    conn?.close();
    conn = null;
    cycle();
  });
  hook(globalThis, "offline", () => conn?.check());
  hook(globalThis.document, "visibilitychange", () => {
    if (globalThis.document.visibilityState === "visible") conn?.check();
  });
  // Timers stop while a laptop sleeps and slow down in a background tab: a gap between
  // ticks much longer than the interval means the connection may have died meanwhile.
  let lastTick = Date.now();
  const ticker = setInterval(() => {
    const now = Date.now();
    if (now - lastTick > 3 * T.tick) conn?.check();
    else conn?.tick(now);
    lastTick = now;
  }, T.tick);

  // ---- the API -------------------------------------------------------------------------

  const subEmitters = new Set();

  async function restPublish(channel, data) {
    const headers = { "Content-Type": "application/json" };
    const tk = await currentToken();
    if (tk) headers.Authorization = `Bearer ${tk}`;
    const ctrl = new AbortController();
    const timer = later(() => ctrl.abort(), T.request);
    try {
      const r = await fetch(`${base}/v1/publish${channel.split("/").map(encodeURIComponent).join("/")}`, {
        method: "POST", headers, body: JSON.stringify(data), signal: ctrl.signal,
      });
      const body = await r.json().catch(() => ({}));
      if (!r.ok) throw Object.assign(new Error(`dingo: ${body.error?.code}: ${body.error?.message}`), { code: body.error?.code });
      return body.position;
    } finally {
      cancel(timer);
    }
  }

  const client = {
    on: events.on,
    get state() { return { state, transport }; },
    subscribe(channel, opts = {}) {
      if (!CHANNEL.test(channel)) throw new TypeError(`dingo: bad channel name ${channel}`);
      if (closed) throw new Error("dingo: the client is closed");
      const em = emitter();
      subEmitters.add(em);
      let e = channels.get(channel);
      const fresh = !e;
      if (fresh) channels.set(channel, (e = { pos: opts.since || null, ready: false, subs: new Set() }));
      e.subs.add(em);
      if (fresh) conn?.sync(channel, true);
      else if (e.ready) queueMicrotask(() => em.emit("subscribed", { channel, position: e.pos, recovered: true }));
      return {
        channel,
        on: em.on,
        unsubscribe() {
          em.clear();
          subEmitters.delete(em);
          if (!e.subs.delete(em) || e.subs.size || channels.get(channel) !== e) return;
          channels.delete(channel);
          conn?.sync(channel, false);
        },
      };
    },
    publish(channel, data) {
      if (!CHANNEL.test(channel)) return Promise.reject(new TypeError(`dingo: bad channel name ${channel}`));
      return conn?.publish(channel, data) || restPublish(channel, data);
    },
    close() {
      if (closed) return;
      stop("closed");
      closed = true;
      clearInterval(ticker);
      for (const id of timers) clearTimeout(id);
      timers.clear();
      for (const remove of hooks.splice(0)) remove();
      for (const em of subEmitters) em.clear();
      subEmitters.clear();
      channels.clear();
      events.clear();
    },
    // For tests and figures: what the client holds now.
    debug() {
      return { timers: timers.size, hooks: hooks.length, listeners: events.size(), subscriptions: subEmitters.size,
        channels: channels.size, failures, closed };
    },
  };
  queueMicrotask(cycle); // after the caller has added its listeners
  return client;
}
