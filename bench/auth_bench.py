"""JWT auth figures (driven by `bench/run.py --only auth`): what an ES256 token adds to a new
TLS WebSocket connection, and how the workers' token caches fare in a reconnect storm.

(cpu)   CPU per new TLS WebSocket connection: TLS 1.3 full handshake (ECDSA P-256
        certificate, no resumption), upgrade on /v1/ws, one {"op":"ping"} and its reply, a
        close frame each way, TCP close. Three supervisors with 1 worker each, the same
        config but for [auth], run side by side and interleaved (ROUNDS rounds, medians):
          a. no [auth];
          b. [auth] with one EC P-256 key (required = true), every connection presenting
             one of 100 tokens (`?token=` on the upgrade URL), cycled; the 100 are cached
             by a warm-up before the first round, so every measured one is a cache hit;
          c. the same [auth], every connection presenting a token never seen before
             (tokens differing in `sub`, minted beforehand): a cache miss, so a signature
             verification and an insertion (1,500 x 5 rounds stay below cache_size =
             10,000: no eviction).
        Server CPU is utime + stime of the supervisor and its worker from /proc, over the
        client's run, divided by the connections completed. The cache counters of the
        admin listener's /metrics are read after the rounds and checked: (b) must show no
        miss beyond the warm-up, (c) no hit.
(storm) Cache hit rate in a reconnect storm: N clients (2,000) each with its own token
        connect (one ping each) and stay; all close; all reconnect at once with the same
        tokens, in another (shuffled) order, and ping. Hit rate = hits / (hits + misses) of the metrics' deltas over the
        disconnect + reconnect. Run with 1 worker (every client back on the worker that
        verified its token) and with 2 workers, round-robin (each worker has its own
        cache, so a client may come back to the one that never saw its token).

The load is this file run as a client process (asyncio + ssl and a minimal RFC 6455
client: masked frames, no extensions), with the interpreter that runs bench/run.py; its
own CPU does not count. Tokens are minted in-process with PyJWT when it is importable
(/usr/bin/python3 has python3-jwt), else with `cryptography` directly (same JWS
ES256: raw r||s signature). Everything listens on 127.0.0.1 and stops by itself.
"""
import argparse
import asyncio
import base64
import json
import os
import random
import re
import ssl
import struct
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
WARM_TOKENS = 100


# ---- tokens -------------------------------------------------------------------------------

def make_keys(d):
    key, pub = os.path.join(d, "es.key"), os.path.join(d, "es.pub")
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "ec", "-in", key, "-pubout", "-out", pub], check=True, capture_output=True)
    return key, pub


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def mint(key_path, subs, ttl_s=3600):
    """ES256 tokens, one per sub, each allowed to subscribe to /rooms/* (as `dingoctl token
    --sub U --subscribe '/rooms/*' --ttl 1h` mints them)."""
    with open(key_path, "rb") as f:
        pem = f.read()
    now = int(time.time())
    claims = lambda sub: {"sub": sub, "iat": now, "exp": now + ttl_s, "channels": {"subscribe": ["/rooms/*"]}}
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    key = serialization.load_pem_private_key(pem, password=None)  # once: PyJWT given PEM parses it each time
    try:
        import jwt
        return [jwt.encode(claims(s), key, algorithm="ES256") for s in subs]
    except ImportError:
        pass
    head = b64url(json.dumps({"alg": "ES256", "typ": "JWT"}, separators=(",", ":")).encode())
    out = []
    for s in subs:
        signing = head + "." + b64url(json.dumps(claims(s), separators=(",", ":")).encode())
        r, sig_s = decode_dss_signature(key.sign(signing.encode(), ec.ECDSA(hashes.SHA256())))
        out.append(signing + "." + b64url(r.to_bytes(32, "big") + sig_s.to_bytes(32, "big")))
    return out


# ---- the client (this file run as a process) -------------------------------------------------

def client_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the client's cost does not count; the server's is the same
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def ws_frame(opcode, payload):
    n = len(payload)
    head = bytes([0x80 | opcode])
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload))


async def read_frame(reader):
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    return b0 & 0x0F, await reader.readexactly(n)


class Conn:
    """One WebSocket over TLS: open() = connect, handshake, upgrade, ping and its reply."""

    def __init__(self, port, token, ctx):
        self.port, self.token, self.ctx = port, token, ctx
        self.reader = self.writer = None

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, ssl=self.ctx,
                                                                  server_hostname="localhost")
        path = "/v1/ws" + (f"?token={self.token}" if self.token else "")
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
                          .encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
        self.writer.write(ws_frame(1, b'{"id":1,"op":"ping"}'))
        while True:
            op, payload = await read_frame(self.reader)
            if op == 8:
                raise RuntimeError(f"closed {payload[:2].hex()} {payload[2:].decode(errors='replace')}")
            if op == 1:
                msg = json.loads(payload)
                if msg.get("id") is None and msg.get("ok") is False:
                    raise RuntimeError(f"refused: {msg}")
                if msg.get("id") == 1:
                    if not msg.get("ok"):
                        raise RuntimeError(f"ping refused: {msg}")
                    return

    async def close(self):
        try:
            self.writer.write(ws_frame(8, struct.pack("!H", 1000)))
            while True:  # the server's close frame, then its close
                op, _ = await read_frame(self.reader)
                if op == 8:
                    break
            await self.reader.read()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            self.writer.close()
            try:
                await asyncio.wait_for(self.writer.wait_closed(), 2)
            except (asyncio.TimeoutError, ConnectionError, ssl.SSLError):
                pass


def load_tokens(path):
    if not path:
        return []
    with open(path) as f:
        return f.read().split()


async def connect_loop(a):
    """--count connections, --concurrency at a time, the i-th with token i mod len(tokens)
    (from --start). Prints {"requests": ok, "errors": n, "elapsed": s, "first_error": ...}."""
    tokens = load_tokens(a.tokens)
    ctx = client_ctx()
    next_i, ok, errors, first_error = 0, 0, 0, None
    deadline = time.monotonic() + a.seconds

    async def worker():
        nonlocal next_i, ok, errors, first_error
        while next_i < a.count and time.monotonic() < deadline:
            i = next_i
            next_i += 1
            tok = tokens[(a.start + i) % len(tokens)] if tokens else None
            c = Conn(a.port, tok, ctx)
            try:
                await asyncio.wait_for(c.open(), 10)
                await asyncio.wait_for(c.close(), 10)
                ok += 1
            except Exception as e:  # counted, the first one shown
                errors += 1
                first_error = first_error or repr(e)
                if c.writer:
                    c.writer.close()

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(a.concurrency)))
    print(json.dumps({"requests": ok, "errors": errors, "elapsed": time.monotonic() - t0,
                      "first_error": first_error}), flush=True)


async def storm(a):
    """Opens one connection per token (--concurrency at a time), prints {"connected": n}, waits
    for a line on stdin, closes them all, reconnects them all at once, prints the second
    phase's figures, and closes everything at the next line on stdin (or EOF)."""
    tokens = load_tokens(a.tokens)[:a.count]
    ctx = client_ctx()
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    sem = asyncio.Semaphore(a.concurrency)

    async def open_one(tok, limit):
        c = Conn(a.port, tok, ctx)
        try:
            if limit:
                async with sem:
                    await asyncio.wait_for(c.open(), 30)
            else:
                await asyncio.wait_for(c.open(), 30)
            return c, None
        except Exception as e:
            if c.writer:
                c.writer.close()
            return None, repr(e)

    first = await asyncio.gather(*(open_one(t, True) for t in tokens))
    conns = [c for c, _ in first if c]
    print(json.dumps({"connected": len(conns), "errors": [e for _, e in first if e][:3]}), flush=True)
    await stdin.readline()
    t0 = time.monotonic()
    await asyncio.gather(*(c.close() for c in conns))
    closed_s = time.monotonic() - t0
    # Clients do not come back in the order they first came: with round-robin dispatch the
    # same order would put each one back on the worker that verified its token.
    random.Random(1).shuffle(tokens)
    t0 = time.monotonic()
    second = await asyncio.gather(*(open_one(t, False) for t in tokens))
    elapsed = time.monotonic() - t0
    conns = [c for c, _ in second if c]
    errs = [e for _, e in second if e]
    print(json.dumps({"reconnected": len(conns), "errors": len(errs), "first_errors": errs[:3],
                      "close_s": closed_s, "reconnect_s": elapsed}), flush=True)
    await stdin.readline()
    await asyncio.gather(*(c.close() for c in conns))


def client_main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("connect", "storm"))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tokens", default="")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30, help="stop by then whatever the count")
    a = ap.parse_args()
    asyncio.run(connect_loop(a) if a.mode == "connect" else storm(a))


# ---- the orchestration (called by bench/run.py) -------------------------------------------

def start(env, name, tls_port, workers, auth_pub=None):
    admin = env.free_port()
    d = os.path.join(env.WORK, f"auth-{name}-{tls_port}")
    os.makedirs(d)
    auth = f'[auth]\nrequired = true\njwt_public_keys = ["{auth_pub}"]\n' if auth_pub else ""
    conf = f"""
[supervisor]
workers = {workers}
dispatch = "round-robin"
control_socket = "control.sock"
pid_file = "supervisor.pid"
[[listen]]
address = "127.0.0.1:{tls_port}"
tls = true
[tls]
cert = "{env.CERTS}/cert.pem"
key = "{env.CERTS}/key.pem"
[gateway]
ping_interval = "10m"
max_connections = 20000
{auth}
[admin]
address = "127.0.0.1:{admin}"
[log]
level = "warn"
"""
    path = os.path.join(d, "dingo.toml")
    with open(path, "w") as f:
        f.write(conf)
    srv = env.Server(f"dingo-auth-{name}", [os.path.join(env.BUILD, "bin", "dingo-supervisor"), "--config", path],
                     tls_port)
    srv.admin, srv.port = admin, tls_port
    control = os.path.join(d, "control.sock")
    deadline = time.time() + 20
    while time.time() < deadline:
        r = subprocess.run([os.path.join(env.BUILD, "bin", "dingoctl"), "--socket", control, "status", "--json"],
                           capture_output=True, text=True)
        if r.returncode == 0 and sum(w["state"] == "ready" for w in json.loads(r.stdout)["workers"]) == workers:
            return srv
        time.sleep(0.2)
    srv.stop()
    raise RuntimeError("dingo workers never became ready")


def cache_counters(srv):
    """(hits, misses) summed over the workers, from the admin listener's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{srv.admin}/metrics", timeout=5).read().decode()
    total = {}
    for name in ("hits", "misses"):
        total[name] = sum(float(v) for v in re.findall(
            rf"^dingo_worker_auth_cache_{name}_total(?:{{[^}}]*}})? (\S+)$", text, re.M))
    return total["hits"], total["misses"]


def settled_counters(srv):
    """The workers send their counters to the supervisor once a second: read twice, 1.2 s
    apart, until two reads agree."""
    last = cache_counters(srv)
    for _ in range(5):
        time.sleep(1.2)
        now = cache_counters(srv)
        if now == last:
            return now
        last = now
    return last


def client(env, *args, timeout):
    cmd = [sys.executable, os.path.abspath(__file__), *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"auth client failed: {r.stderr[-500:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def bench_cpu(env, count, concurrency):
    d = os.path.join(env.WORK, "auth-keys")
    os.makedirs(d, exist_ok=True)
    key, pub = make_keys(d)
    t0 = time.time()
    cold_n = count * env.ROUNDS
    warm = mint(key, [f"warm-{i}" for i in range(WARM_TOKENS)])
    cold = mint(key, [f"user-{i:06d}" for i in range(cold_n)])
    print(f"  auth: minted {WARM_TOKENS + cold_n} ES256 tokens in {time.time() - t0:.1f} s "
          f"({len(warm[0])} bytes each)", file=sys.stderr)
    warm_file, cold_file = os.path.join(d, "warm.txt"), os.path.join(d, "cold.txt")
    for path, toks in ((warm_file, warm), (cold_file, cold)):
        with open(path, "w") as f:
            f.write("\n".join(toks))
    servers = {}
    try:
        servers["a"] = start(env, "none", env.free_port(), 1)
        servers["b"] = start(env, "warm", env.free_port(), 1, pub)
        servers["c"] = start(env, "cold", env.free_port(), 1, pub)
        # Warm-up: every server does a few connections (first-use costs out of the rounds),
        # and (b) caches its 100 tokens.
        client(env, "connect", "--port", servers["a"].port, "--count", WARM_TOKENS, timeout=60)
        client(env, "connect", "--port", servers["b"].port, "--tokens", warm_file, "--count", WARM_TOKENS,
               timeout=60)
        base = {k: settled_counters(servers[k]) for k in ("b", "c")}
        used = {"c": 0}

        def load(k):
            if k == "a":
                return lambda: client(env, "connect", "--port", servers[k].port, "--count", count,
                                      "--concurrency", concurrency, timeout=120)
            if k == "b":
                return lambda: client(env, "connect", "--port", servers[k].port, "--tokens", warm_file,
                                      "--count", count, "--concurrency", concurrency, timeout=120)

            def cold_run():
                r = client(env, "connect", "--port", servers[k].port, "--tokens", cold_file,
                           "--start", used["c"], "--count", count, "--concurrency", concurrency, timeout=120)
                used["c"] += count  # never a token twice, even after an error
                return r
            return cold_run

        samples = {k: [] for k in servers}  # each run's result; rounds() adds cpu_us to it

        def kept(k, run):
            def f():
                r = run()
                samples[k].append(r)
                return r
            return f

        loads = {k: {"connect": kept(k, load(k))} for k in servers}
        res = env.rounds(servers, loads)
        after = {k: settled_counters(servers[k]) for k in ("b", "c")}
    finally:
        for s in servers.values():
            s.stop()
    counters = {k: (after[k][0] - base[k][0], after[k][1] - base[k][1]) for k in after}
    out = {k: res[(k, "connect")] for k in servers}
    per_round = [{k: samples[k][i]["cpu_us"] for k in servers} for i in range(env.ROUNDS)]
    print(f"  auth cpu: {out}\n  cache counters over the rounds (hits, misses): {counters}\n"
          f"  per round µs (a, b, c): {[(r['a'], r['b'], r['c']) for r in per_round]}", file=sys.stderr)
    return {"res": out, "counters": counters, "token_bytes": len(warm[0]), "per_round": per_round}


def bench_storm(env, clients, workers):
    d = os.path.join(env.WORK, "auth-keys")
    key = os.path.join(d, "es.key")
    pub = os.path.join(d, "es.pub")
    if not os.path.exists(key):
        os.makedirs(d, exist_ok=True)
        key, pub = make_keys(d)
    path = os.path.join(d, f"storm-{workers}.txt")
    with open(path, "w") as f:
        f.write("\n".join(mint(key, [f"storm{workers}-{i}" for i in range(clients)])))
    srv = start(env, f"storm{workers}", env.free_port(), workers, pub)
    p = None
    try:
        p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "storm", "--port", str(srv.port),
                              "--tokens", path, "--count", str(clients), "--concurrency", "64"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        first = json.loads(p.stdout.readline())
        h0, m0 = settled_counters(srv)
        pids = srv.pids()
        cpu0 = env.cpu_seconds(pids)
        p.stdin.write("go\n")
        p.stdin.flush()
        second = json.loads(p.stdout.readline())
        cpu = env.cpu_seconds(pids) - cpu0
        h1, m1 = settled_counters(srv)
        p.stdin.write("done\n")
        p.stdin.flush()
        p.wait(timeout=60)
    finally:
        if p and p.poll() is None:
            p.kill()
            p.wait()
        srv.stop()
    hits, misses = h1 - h0, m1 - m0
    r = {"workers": workers, "clients": clients, "connected": first["connected"],
         "reconnected": second["reconnected"], "errors": second["errors"], "hits": hits, "misses": misses,
         "hit_rate": hits / max(hits + misses, 1), "reconnect_s": second["reconnect_s"],
         "cpu_us": cpu / max(second["reconnected"], 1) * 1e6, "first_errors": second["first_errors"]}
    print(f"  auth storm: {r}", file=sys.stderr)
    return r


def bench_auth(env, count=1500, concurrency=8, storm_clients=2000):
    cpu = bench_cpu(env, count, concurrency)
    storms = [bench_storm(env, storm_clients, w) for w in (1, 2)]
    return {"cpu": cpu, "storms": storms}


def print_tables(r):
    if not r:
        return
    res, counters = r["cpu"]["res"], r["cpu"]["counters"]
    a = res["a"]["cpu_us"]
    print()
    print(f"| (auth) new TLS 1.3 WebSocket connection (handshake, upgrade, ping, close), 1 worker "
          f"| server CPU µs/connect | ratio to (a) | connects/s | errors (all rounds) | cache hits / misses (all rounds) |")
    print("|---|---:|---:|---:|---:|---:|")
    labels = {"a": "a. no [auth]", "b": f"b. ES256 token, warm cache ({WARM_TOKENS} tokens cycled)",
              "c": "c. ES256 token, cold cache (a new token each)"}
    for k in ("a", "b", "c"):
        x = res[k]
        hm = f"{counters[k][0]:,.0f} / {counters[k][1]:,.0f}" if k in counters else "–"
        print(f"| {labels[k]} | {x['cpu_us']:.1f} | {x['cpu_us'] / a:.2f}× | {x['rps']:.0f} | {x['errors']} | {hm} |")
    b, c = res["b"]["cpu_us"], res["c"]["cpu_us"]
    print()
    print(f"Warm-cache overhead b/a = {b / a:.3f} (goal ≤ 1.10: {'met' if b / a <= 1.10 else '**not met**'}); "
          f"cold c/a = {c / a:.3f}; a verification costs about c − b = {c - b:.0f} µs, c − a = {c - a:.0f} µs "
          f"(token {r['cpu']['token_bytes']} bytes).")
    rounds = r["cpu"]["per_round"]
    print()
    print("Per round, µs a / b / c (b/a, c/a): " + "; ".join(
        f"{x['a']:.0f} / {x['b']:.0f} / {x['c']:.0f} ({x['b'] / x['a']:.2f}, {x['c'] / x['a']:.2f})" for x in rounds))
    print()
    print("| (auth) reconnect storm | workers | clients | reconnected | errors | cache hits | misses | hit rate "
          "| reconnect wall s | server CPU µs per client (close + reconnect) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in r["storms"]:
        print(f"| all close, all reconnect at once, same tokens | {s['workers']} | {s['clients']:,} | "
              f"{s['reconnected']:,} | {s['errors']} | {s['hits']:,.0f} | {s['misses']:,.0f} | "
              f"{s['hit_rate'] * 100:.1f}% | {s['reconnect_s']:.1f} | {s['cpu_us']:.0f} |")


if __name__ == "__main__":
    client_main()
