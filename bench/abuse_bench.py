"""Hardening figures of issue 12 (driven by `bench/run.py --only abuse`): what each abuse
case costs a supervisor with 2 workers, and what a well-behaved client sees meanwhile.

For every case, on a fresh supervisor (2 workers, round-robin, defaults except what the
case names):
  1. idle: the well-behaved client (the "probe") runs alone for S seconds;
  2. abuse: the attacker starts, and after a 1 s ramp the probe runs again for S seconds
     while the attacker goes on; the attacker stops by itself when the probe is done.
The probe is its own process: two keep-alive connections from 127.0.0.2, one on each
worker, each sending `GET /healthz` every 10 ms and timing the answer. Reported: its
p50/p99 idle and under abuse (goal: p99 within 2x of idle, and no failed request), the
workers' RSS (sum of both, idle and the highest sample) and CPU (% of one core, both
workers, over the probe's window), the supervisor's RSS, the workers' own `loop_lag_ms`
(highest value `dingoctl status --json` showed), worker restarts, and what the attacker
saw (status codes, cuts). Attackers run from 127.0.0.1 at nice 10, so that on this 2-core
machine the load generator's own CPU competes as little as it can with the server, as it
would from another host; the probe runs at normal priority.

Cases (each bounded in count and time, loopback only):
  benign        not an attack, the reference: wrk with 4 keep-alive connections asking
                GET /healthz as fast as it can, also at nice 10. It shows what plain CPU
                contention on these 2 cores does to the probe, so that a case's ratio can
                be read against it.
  deepjson      JSON nested 100,000 deep, published every 0.3 s, alternately over REST and
                over WebSocket (`max_message_size` raised to 256 KiB so the frame is read).
  continuation  WebSocket connections that send a text frame without FIN and then empty
                continuation frames without end; reconnect when cut.
  firstpolls    cursor-less polls over 128 random channels each, back to back on 4
                keep-alive connections (supervisor RSS is the figure to watch);
                `max_header_bytes` raised to 32 KiB, since at the default 8 KiB the
                server refuses such polls (413) before they cost anything.
  racingpolls   rounds of 200 polls sent at once with the same cursor; half the clients
                leave, then a publish must answer every poll still there (hung = no answer
                within 3 s); CLOSE-WAIT sockets on the server port are counted afterwards.
  slowloris     2,000 connections that send one header byte a second each; reconnect
                when cut.
  flood         new connections from one IP as fast as wrk makes them (Connection: close);
                per-IP limits are enabled when this build's config accepts them.
  large         4 clients publishing 1 MB JSON documents back to back over REST
                (`max_body_bytes` and `max_message_size` 2 MiB): the loop-lag figure.

Also runnable by hand, which is how run.py starts the two sides:
  abuse_bench.py probe --port P --seconds S [--interval 0.01] [--source 127.0.0.2]
  abuse_bench.py attack CASE --port P --seconds S
Each prints one JSON object.
"""
import argparse
import base64
import json
import os
import random
import re
import resource
import selectors
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = ("benign", "deepjson", "continuation", "firstpolls", "racingpolls", "slowloris", "flood", "large")
RAMP_S = 1.0          # the attacker runs alone this long before the probe starts
PROBE_SOURCE = "127.0.0.2"
GOAL_RATIO = 2.0      # the probe's p99 under abuse, at most this times its idle p99

# Per-IP limits are being added by another change; each candidate key is enabled only if
# this build's `--check-config` accepts it (the report says which were).
PER_IP_CANDIDATES = (
    ("gateway", "max_connections_per_ip", "64"),
    ("gateway", "new_connections_per_ip_per_second", "200"),
    ("gateway", "connections_per_second_per_ip", "200"),
    ("gateway", "connection_rate_per_ip", "200"),
    ("supervisor", "max_connections_per_ip", "64"),
    ("supervisor", "new_connections_per_ip_per_second", "200"),
    ("supervisor", "connections_per_second_per_ip", "200"),
    ("supervisor", "connection_rate_per_ip", "200"),
)


# ---- small HTTP and WebSocket clients (stdlib only) ---------------------------------------

def connect(port, source=None, timeout=10):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if source:
        s.bind((source, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


def read_response(s, buf=b""):
    """Reads one HTTP/1.1 response with a Content-Length from `s`; returns
    (status, body, leftover bytes). Raises ConnectionError if the peer closes first."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = int(head[9:12])
    m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    length = int(m.group(1)) if m else 0
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside the response body")
        rest += chunk
    return status, rest[:length], rest[length:]


def post(port, path, body, s=None):
    """POSTs `body` (bytes); on a new connection unless `s` is given. Returns (status, body)."""
    own = s is None
    if own:
        s = connect(port)
    try:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        status, rbody, _ = read_response(s)
        return status, rbody
    finally:
        if own:
            s.close()


def ws_frame(opcode, payload, fin=True):
    """A masked client frame (a zero mask key: RFC 6455 wants the bit, any key will do)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + b"\0\0\0\0" + payload


def ws_connect(port, timeout=10):
    s = connect(port, timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the upgrade")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.split(b"\r\n")[0].decode(errors="replace"))
    return s, rest


def ws_read(s, buf):
    """Reads one server frame; returns (opcode, payload, leftover)."""
    while True:
        if len(buf) >= 2:
            n = buf[1] & 0x7F
            off = 2
            if n == 126 and len(buf) >= 4:
                n, off = struct.unpack(">H", buf[2:4])[0], 4
            elif n == 127 and len(buf) >= 10:
                n, off = struct.unpack(">Q", buf[2:10])[0], 10
            if n < 126 or off > 2:
                if len(buf) >= off + n:
                    return buf[0] & 0x0F, buf[off:off + n], buf[off + n:]
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk


def percentile(values, p):
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(p * len(v)))]


# ---- the well-behaved client --------------------------------------------------------------

def probe(port, seconds, interval, source):
    """Two keep-alive connections, one on each worker, each sending GET /healthz every
    `interval` seconds for `seconds`; a broken connection counts one error and is
    replaced."""
    def open_on(worker_wanted, tries=12):
        for _ in range(tries):
            s = connect(port, source)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            status, body, _ = read_response(s)
            w = json.loads(body).get("worker")
            if worker_wanted is None or w == worker_wanted:
                return s, w
            s.close()
        return connect(port, source), worker_wanted

    first, w0 = open_on(None)
    second, w1 = open_on(1 - w0 if w0 in (0, 1) else None)
    lat, errors, lock = [], [0], threading.Lock()
    end = time.monotonic() + seconds
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"

    def run(s, worker, offset):
        mine = []
        next_t = time.monotonic() + offset
        while True:
            now = time.monotonic()
            if next_t > now:
                time.sleep(next_t - now)
            if time.monotonic() >= end:
                break
            t0 = time.perf_counter()
            try:
                s.sendall(request)
                status, _, _ = read_response(s)
                if status != 200:
                    raise ConnectionError(f"status {status}")
                mine.append((time.perf_counter() - t0) * 1000)
            except (OSError, ValueError):
                with lock:
                    errors[0] += 1
                s.close()
                try:
                    s, worker = open_on(worker, tries=4)
                except (OSError, ValueError):
                    time.sleep(0.05)
            next_t = max(next_t + interval, time.monotonic())
        s.close()
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=run, args=(first, w0, 0.0)),
               threading.Thread(target=run, args=(second, w1, interval / 2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"count": len(lat), "errors": errors[0], "p50_ms": percentile(lat, 0.50),
            "p99_ms": percentile(lat, 0.99), "max_ms": max(lat) if lat else 0.0, "workers": [w0, w1]}


# ---- attackers ----------------------------------------------------------------------------

def until(seconds):
    end = time.monotonic() + seconds
    return lambda: time.monotonic() < end


def attack_deepjson(port, seconds):
    """JSON nested 100,000 deep every 0.3 s, REST and WebSocket in turn."""
    doc = b"[" * 100000 + b"]" * 100000
    alive, out = until(seconds), {"rest": {}, "ws": {}, "errors": 0}
    ws, buf, n = None, b"", 0
    while alive():
        t0 = time.monotonic()
        n += 1
        try:
            if n % 2:
                status, _ = post(port, "/v1/publish/abuse/deep", doc)
                out["rest"][str(status)] = out["rest"].get(str(status), 0) + 1
            else:
                if ws is None:
                    ws, buf = ws_connect(port)
                cmd = b'{"id":%d,"op":"publish","channel":"/abuse/deep","data":' % n + doc + b"}"
                ws.sendall(ws_frame(1, cmd))
                while True:
                    op, payload, buf = ws_read(ws, buf)
                    if op == 1 and payload.startswith(b'{"id":'):
                        break
                    if op == 8:
                        raise ConnectionError("closed by the server")
                reply = json.loads(payload)
                key = "ok" if reply.get("ok") else reply.get("error", {}).get("code", "?")
                out["ws"][key] = out["ws"].get(key, 0) + 1
        except (OSError, ValueError):
            out["errors"] += 1
            if ws is not None:
                ws.close()
            ws, buf = None, b""
        time.sleep(max(0.0, 0.3 - (time.monotonic() - t0)))
    if ws is not None:
        ws.close()
    return out


def attack_continuation(port, seconds, clients=2, cap_bytes=64 << 20):
    """A text frame without FIN, then empty continuation frames until the server cuts the
    connection (or `cap_bytes` went unanswered: then it was not cut)."""
    empty = ws_frame(0, b"", fin=False) * 10000  # 60 KB of empty continuation frames
    alive = until(seconds)
    out = {"connections": 0, "cut": 0, "not_cut": 0, "close_codes": {}, "errors": 0}
    lock = threading.Lock()

    def one():
        while alive():
            try:
                s, buf = ws_connect(port)
            except (OSError, ValueError):
                with lock:
                    out["errors"] += 1
                time.sleep(0.05)
                continue
            sent, code = 0, None
            s.sendall(ws_frame(1, b"[", fin=False))
            s.settimeout(5)
            try:
                while alive() and sent < cap_bytes:
                    s.sendall(empty)
                    sent += len(empty)
                    s.setblocking(False)
                    try:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        buf += chunk
                        if len(buf) >= 4 and buf[0] & 0x0F == 8:
                            code = struct.unpack(">H", buf[2:4])[0]
                            break
                    except BlockingIOError:
                        pass
                    finally:
                        s.setblocking(True)
                        s.settimeout(5)
            except OSError:
                pass  # reset: the server cut us
            s.close()
            with lock:
                out["connections"] += 1
                if sent >= cap_bytes:
                    out["not_cut"] += 1
                elif alive() or code is not None:
                    out["cut"] += 1
                    key = str(code) if code is not None else "reset/closed"
                    out["close_codes"][key] = out["close_codes"].get(key, 0) + 1

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def attack_firstpolls(port, seconds, clients=4, channels=128):
    """Cursor-less polls over `channels` random channels each, back to back."""
    alive = until(seconds)
    out = {"polls": 0, "status": {}, "errors": 0}
    lock = threading.Lock()

    def one():
        s, n, codes, errors = None, 0, {}, 0
        rnd = random.Random()
        while alive():
            try:
                if s is None:
                    s = connect(port)
                q = "&".join(f"channel=/fp/{rnd.getrandbits(48):012x}" for _ in range(channels))
                s.sendall(f"GET /v1/poll?{q} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                status, _, _ = read_response(s)
                codes[str(status)] = codes.get(str(status), 0) + 1
                n += 1
            except (OSError, ValueError):
                errors += 1
                if s is not None:
                    s.close()
                s = None
        if s is not None:
            s.close()
        with lock:
            out["polls"] += n
            out["errors"] += errors
            for k, v in codes.items():
                out["status"][k] = out["status"].get(k, 0) + v

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def attack_racingpolls(port, seconds, per_round=200, channel="/race/one"):
    """Rounds of `per_round` polls with one cursor, sent at once; half the clients leave;
    a publish must then answer every poll that is still there."""
    alive = until(seconds)
    out = {"rounds": 0, "polls": 0, "left": 0, "answered": 0, "hung": 0, "errors": 0, "status": {}}
    while alive():
        try:
            s = connect(port)
            s.sendall(f"GET /v1/poll?channel={channel} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            _, body, _ = read_response(s)
            s.close()
            cursor = json.loads(body)["cursor"]
            request = f"GET /v1/poll?channel={channel}&cursor={cursor} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            conns = []
            for _ in range(per_round):
                try:
                    conns.append(connect(port))
                except OSError:
                    out["errors"] += 1
            for c in conns:  # as close together as a loop can
                c.sendall(request)
            time.sleep(0.3)
            leaving, staying = conns[: len(conns) // 2], conns[len(conns) // 2:]
            for c in leaving:
                c.close()
            post(port, "/v1/publish" + channel, b'{"n":1}')
            deadline = time.monotonic() + 3
            sel = selectors.DefaultSelector()
            bufs = {}
            for c in staying:
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ)
                bufs[c] = b""
            answered = 0
            while bufs and time.monotonic() < deadline:
                for key, _ in sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    c = key.fileobj
                    try:
                        chunk = c.recv(65536)
                    except OSError:
                        chunk = b""
                    bufs[c] += chunk
                    done = not chunk
                    m = re.search(rb"(?i)content-length: *(\d+)", bufs[c])
                    head_end = bufs[c].find(b"\r\n\r\n")
                    if m and head_end >= 0 and len(bufs[c]) >= head_end + 4 + int(m.group(1)):
                        code = bufs[c][9:12].decode()
                        out["status"][code] = out["status"].get(code, 0) + 1
                        answered += 1
                        done = True
                    if done:
                        sel.unregister(c)
                        del bufs[c]
            out["hung"] += len(bufs)
            out["answered"] += answered
            out["left"] += len(leaving)
            out["polls"] += len(conns)
            out["rounds"] += 1
            sel.close()
            for c in staying:
                c.close()
        except (OSError, ValueError, KeyError):
            out["errors"] += 1
            time.sleep(0.1)
    return out


def attack_slowloris(port, seconds, count=2000):
    """`count` connections, each sending one more header byte every second; a connection
    the server cuts is replaced at once. Reports how long the server took to cut them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, count + 256)), hard))
    alive = until(seconds)
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100000
    sel = selectors.DefaultSelector()
    conns = {}  # socket -> (opened at, bytes sent)
    out = {"opened": 0, "cut": 0, "errors": 0, "cut_after_s": []}

    def open_one():
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        except OSError:
            out["errors"] += 1
            s.close()
            return
        sel.register(s, selectors.EVENT_READ)
        conns[s] = [time.monotonic(), 0]
        out["opened"] += 1

    for _ in range(count):
        open_one()
    next_tick = time.monotonic()
    while alive():
        timeout = max(0.0, next_tick - time.monotonic())
        for key, _ in sel.select(timeout=timeout):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:  # cut (or answered and closed: either way, gone)
                out["cut"] += 1
                out["cut_after_s"].append(time.monotonic() - conns[s][0])
                sel.unregister(s)
                s.close()
                del conns[s]
                open_one()
        if time.monotonic() >= next_tick:
            next_tick += 1.0
            for s, state in list(conns.items()):
                if state[1] < len(head):
                    try:
                        s.send(head[state[1]:state[1] + 1])
                        state[1] += 1
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        pass  # the read side reports it
    for s in conns:
        s.close()
    cuts = out.pop("cut_after_s")
    out["held_at_end"] = len(conns)
    out["median_s_to_cut"] = round(percentile(cuts, 0.5), 2)
    return out


def wrk(port, seconds, connections, close):
    """Runs wrk against GET /healthz; returns what it counted (connections = requests)."""
    args = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, int(round(seconds)))}s"]
    if close:
        args += ["-H", "Connection: close"]
    r = subprocess.run(args + [f"http://127.0.0.1:{port}/healthz"], capture_output=True, text=True,
                       timeout=seconds + 60)
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", r.stdout)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", r.stdout)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", r.stdout)
    requests = int(m.group(1)) if m else 0
    return {"connections": requests, "per_s": round(requests / max(seconds, 1e-9)),
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(0) if errors else "none"}


def attack_benign(port, seconds):
    """The reference load: keep-alive requests as fast as 4 connections go."""
    r = wrk(port, seconds, 4, False)
    return {"requests": r.pop("connections"), **r}


def attack_flood(port, seconds):
    """New connections from one IP (127.0.0.1) as fast as wrk makes them."""
    return wrk(port, seconds, 64, True)


def big_document(size=1_000_000):
    """A realistic 1 MB JSON document: many small objects with strings and numbers."""
    items, n, total = [], 0, 20
    while total < size:
        item = json.dumps({"id": n, "name": f"item-{n}", "tags": ["alpha", "beta"], "price": n * 0.25,
                           "active": n % 2 == 0}, separators=(",", ":"))
        items.append(item)
        total += len(item) + 1
        n += 1
    return ('{"items":[' + ",".join(items) + "]}").encode()


def attack_large(port, seconds, clients=4):
    """`clients` keep-alive connections publishing 1 MB documents back to back."""
    doc = big_document()
    alive = until(seconds)
    out = {"publishes": 0, "status": {}, "errors": 0, "bytes": len(doc)}
    lock = threading.Lock()

    def one(i):
        s = None
        while alive():
            try:
                if s is None:
                    s = connect(port)
                status, _ = post(port, f"/v1/publish/abuse/large{i}", doc, s)
                with lock:
                    out["publishes"] += 1
                    out["status"][str(status)] = out["status"].get(str(status), 0) + 1
            except (OSError, ValueError):
                with lock:
                    out["errors"] += 1
                if s is not None:
                    s.close()
                s = None
        if s is not None:
            s.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out["mb_per_s"] = round(out["publishes"] * len(doc) / 1e6 / seconds, 1)
    return out


ATTACKS = {"benign": attack_benign, "deepjson": attack_deepjson, "continuation": attack_continuation, "firstpolls": attack_firstpolls,
           "racingpolls": attack_racingpolls, "slowloris": attack_slowloris, "flood": attack_flood,
           "large": attack_large}


# ---- the orchestration (called by bench/run.py) -----------------------------------------

def case_config(case, per_ip):
    """[gateway] lines and extra sections each case needs beyond the defaults."""
    gateway = []
    if case == "deepjson":
        gateway += ["client_publish = true", 'max_message_size = "256KiB"']
    if case == "firstpolls":
        # 128 channels of 16 characters need a cursor that, with the channel list, passes
        # the default 8 KiB head (the server answers 413 to them): the case raises it, so
        # that what it measures is the cost of the polls the config lets in.
        gateway += ['max_header_bytes = "32KiB"']
    if case == "large":
        gateway += ['max_body_bytes = "2MiB"', 'max_message_size = "2MiB"']
    sections = {"gateway": gateway, "supervisor": []}
    if case in ("flood", "slowloris"):
        for section, key, value in per_ip:
            sections[section].append(f"{key} = {value}")
    return sections


def write_config(env, d, plain, sections):
    conf = f"""
[supervisor]
workers = 2
dispatch = "round-robin"
control_socket = "control.sock"
pid_file = "supervisor.pid"
{chr(10).join(sections.get("supervisor", []))}
[[listen]]
address = "127.0.0.1:{plain}"
[gateway]
{chr(10).join(sections.get("gateway", []))}
[admin]
address = ""
[log]
level = "warn"
"""
    path = os.path.join(d, "dingo.toml")
    with open(path, "w") as f:
        f.write(conf)
    return path


def per_ip_keys(env):
    """The per-IP limit keys this build accepts (tried one at a time with --check-config)."""
    accepted = []
    d = os.path.join(env.WORK, "per-ip-check")
    os.makedirs(d, exist_ok=True)
    for section, key, value in PER_IP_CANDIDATES:
        path = write_config(env, d, env.free_port(), {section: [f"{key} = {value}"]})
        r = subprocess.run([os.path.join(env.BUILD, "bin", "dingo-supervisor"), "--check-config", path],
                           capture_output=True, text=True)
        if r.returncode == 0:
            accepted.append((section, key, value))
    return accepted


def start_server(env, case, per_ip):
    plain = env.free_port()
    d = os.path.join(env.WORK, f"abuse-{case}-{plain}")
    os.makedirs(d)
    path = write_config(env, d, plain, case_config(case, per_ip))
    srv = env.Server(f"dingo-abuse-{case}", [os.path.join(env.BUILD, "bin", "dingo-supervisor"), "--config", path],
                     plain)
    srv.control = os.path.join(d, "control.sock")
    srv.port = plain
    deadline = time.time() + 20
    while time.time() < deadline:
        st = status(env, srv.control)
        if st and sum(w["state"] == "ready" for w in st["workers"]) == 2:
            return srv
        time.sleep(0.2)
    srv.stop()
    raise RuntimeError("dingo workers never became ready")


def status(env, control):
    try:
        r = subprocess.run([os.path.join(env.BUILD, "bin", "dingoctl"), "--socket", control, "status", "--json"],
                           capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return None
    return json.loads(r.stdout) if r.returncode == 0 else None


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def close_wait(port):
    """Sockets in CLOSE-WAIT whose local port is `port` (the server's side)."""
    n = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if int(parts[1].rsplit(":", 1)[1], 16) == port and parts[3] == "08":
                        n += 1
        except OSError:
            pass
    return n


class Sampler:
    """Samples, in a thread, the workers' and the supervisor's RSS every 0.25 s and the
    workers' loop_lag_ms (dingoctl status) every 0.5 s."""

    def __init__(self, env, srv):
        self.env, self.srv = env, srv
        self.rss, self.sup_rss, self.lag = [], [], []
        self.stop_ = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def workers(self):
        return self.env.children(self.srv.proc.pid)

    def run(self):
        n = 0
        while not self.stop_.is_set():
            self.rss.append(sum(rss_kb(p) for p in self.workers()))
            self.sup_rss.append(rss_kb(self.srv.proc.pid))
            if n % 2 == 0:
                st = status(self.env, self.srv.control)
                if st:
                    self.lag.append(max((w.get("loop_lag_ms", 0) or 0) for w in st["workers"]))
            n += 1
            self.stop_.wait(0.25)

    def stop(self):
        self.stop_.set()
        self.thread.join()


def run_probe(env, port, seconds):
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "probe", "--port", str(port),
                        "--seconds", str(seconds)], capture_output=True, text=True, timeout=seconds + 60)
    if r.returncode != 0:
        raise RuntimeError(f"probe failed: {r.stderr}")
    return json.loads(r.stdout)


def phase(env, srv, seconds, attack=None):
    """One measured window: the probe for `seconds`, with `attack` (a case name) running
    from RAMP_S before it to its end. Returns the probe's figures and the server's."""
    sampler = Sampler(env, srv)
    before = status(env, srv.control) or {"workers": []}
    attacker = None
    if attack:
        attacker = subprocess.Popen(["nice", "-n", "10", sys.executable, os.path.abspath(__file__), "attack", attack,
                                     "--port", str(srv.port), "--seconds", str(seconds + RAMP_S)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(RAMP_S)
    workers = env.children(srv.proc.pid)
    cpu0, t0 = env.cpu_seconds(workers), time.monotonic()
    p = run_probe(env, srv.port, seconds)
    cpu = env.cpu_seconds(workers) - cpu0
    wall = time.monotonic() - t0
    attack_out = None
    if attacker:
        try:
            out, err = attacker.communicate(timeout=seconds + 60)
            attack_out = json.loads(out) if attacker.returncode == 0 else {"failed": err[-300:]}
        except subprocess.TimeoutExpired:
            attacker.kill()
            attacker.communicate()
            attack_out = {"failed": "did not stop by itself"}
    time.sleep(1)  # what the server holds once the attack is over
    after = status(env, srv.control) or {"workers": []}
    sampler.stop()
    restarts = sum(w.get("restarts", 0) for w in after["workers"]) - sum(
        w.get("restarts", 0) for w in before["workers"])
    return {"probe": p, "cpu_pct": cpu / wall * 100, "rss_kb_max": max(sampler.rss, default=0),
            "rss_kb_first": sampler.rss[0] if sampler.rss else 0,
            "sup_rss_kb_max": max(sampler.sup_rss, default=0), "sup_rss_kb_first": sampler.sup_rss[0] if sampler.sup_rss else 0,
            "sup_rss_kb_after": rss_kb(srv.proc.pid), "lag_ms_max": max(sampler.lag, default=0.0),
            "restarts": restarts, "close_wait": close_wait(srv.port), "attack": attack_out}


def bench_abuse(env, seconds, cases=CASES):
    per_ip = per_ip_keys(env)
    print(f"  abuse: per-IP limit keys accepted by this build: {per_ip or 'none'}", file=sys.stderr)
    rows = []
    for case in cases:
        samples = []
        for _ in range(env.ROUNDS):
            srv = start_server(env, case, per_ip)
            try:
                idle = phase(env, srv, seconds)
                abuse = phase(env, srv, seconds, case)
            finally:
                srv.stop()
            samples.append((idle, abuse))
            print(f"  abuse {case}: idle {idle}\n    under abuse {abuse}", file=sys.stderr)
        rows.append((case, samples, per_ip))
    return rows


def summarize(samples):
    """Medians over rounds of latencies and costs; totals of errors and restarts."""
    med = lambda xs: sorted(xs)[len(xs) // 2]
    idle = [s[0] for s in samples]
    abuse = [s[1] for s in samples]
    return {
        "idle_p50": med([i["probe"]["p50_ms"] for i in idle]), "idle_p99": med([i["probe"]["p99_ms"] for i in idle]),
        "p50": med([a["probe"]["p50_ms"] for a in abuse]), "p99": med([a["probe"]["p99_ms"] for a in abuse]),
        "max": max(a["probe"]["max_ms"] for a in abuse),
        "errors": sum(a["probe"]["errors"] for a in abuse), "idle_errors": sum(i["probe"]["errors"] for i in idle),
        "rss_idle": med([i["rss_kb_max"] for i in idle]), "rss_max": max(a["rss_kb_max"] for a in abuse),
        "cpu_idle": med([i["cpu_pct"] for i in idle]), "cpu": med([a["cpu_pct"] for a in abuse]),
        "sup_idle": med([i["sup_rss_kb_max"] for i in idle]), "sup_max": max(a["sup_rss_kb_max"] for a in abuse),
        "sup_after": abuse[-1]["sup_rss_kb_after"],
        "lag_idle": max(i["lag_ms_max"] for i in idle), "lag": max(a["lag_ms_max"] for a in abuse),
        "restarts": sum(a["restarts"] for a in abuse), "close_wait": max(a["close_wait"] for a in abuse),
        "attack": [a["attack"] for a in abuse],
    }


LABELS = {"benign": "0. reference, not an attack: keep-alive load (wrk -c4)",
          "deepjson": "1. deep JSON (100,000 levels) every 0.3 s, REST and WS",
          "continuation": "2. endless empty WS continuation frames (2 clients)",
          "firstpolls": "3. first polls over 128 random channels (4 clients, back to back)",
          "racingpolls": "4. 200 polls racing on one cursor, per round",
          "slowloris": "5. slowloris: 2,000 connections, a header byte a second each",
          "flood": "6. connection flood from one IP (wrk -c64, Connection: close)",
          "large": "7. large publishes: 4 clients, 1 MB JSON back to back (loop lag)"}


def mb(kb):
    return f"{kb / 1024:.1f} MB"


def print_table(rows):
    if not rows:
        return
    print()
    print("| abuse case | workers' RSS idle → max | workers' CPU % of a core idle → during | supervisor RSS idle → max (1 s after) "
          "| well-behaved p50 / p99 ms, idle | during | p99 ratio | failed requests | worker restarts "
          "| loop_lag_ms max | met (p99 ≤ 2× idle, none failed)? |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for case, samples, _ in rows:
        s = summarize(samples)
        ratio = s["p99"] / max(s["idle_p99"], 1e-9)
        met = ratio <= GOAL_RATIO and s["errors"] == 0
        verdict = "(reference)" if case == "benign" else "met" if met else "**not met**"
        print(f"| {LABELS[case]} | {mb(s['rss_idle'])} → {mb(s['rss_max'])} | {s['cpu_idle']:.0f} → {s['cpu']:.0f} | "
              f"{mb(s['sup_idle'])} → {mb(s['sup_max'])} ({mb(s['sup_after'])}) | "
              f"{s['idle_p50']:.2f} / {s['idle_p99']:.2f} | {s['p50']:.2f} / {s['p99']:.2f} | {ratio:.1f}× | "
              f"{s['errors']} | {s['restarts']} | {s['lag']:.1f} | {verdict} |")
    print()
    print("What the attackers saw (per round), and CLOSE-WAIT sockets on the server port 1 s after:")
    print()
    for case, samples, per_ip in rows:
        s = summarize(samples)
        extra = ""
        if case in ("flood", "slowloris"):
            extra = (" per-IP limits: " + ", ".join(f"[{a}] {k} = {v}" for a, k, v in per_ip)) if per_ip else \
                " per-IP limits: none in this build (measured without)"
        print(f"- {case}: {json.dumps(s['attack'])}; CLOSE-WAIT {s['close_wait']}.{extra}")


# ---- command line (the probe and the attackers run as their own processes) ---------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("probe", "attack"))
    ap.add_argument("case", nargs="?", choices=CASES)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--interval", type=float, default=0.01, help="(probe) seconds between requests per connection")
    ap.add_argument("--source", default=PROBE_SOURCE, help="(probe) source address")
    a = ap.parse_args()
    if a.mode == "probe":
        print(json.dumps(probe(a.port, a.seconds, a.interval, a.source)))
    else:
        if not a.case:
            ap.error("attack needs a case")
        print(json.dumps(ATTACKS[a.case](a.port, a.seconds)))


if __name__ == "__main__":
    main()
