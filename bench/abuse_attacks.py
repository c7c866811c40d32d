"""The two sides of the abuse benchmark (bench/abuse_bench.py starts each as its own
process): the well-behaved client ("probe") and the attackers, with the small HTTP and
WebSocket clients they share. Python stdlib only; loopback only; everything stops by
itself after --seconds.

  abuse_attacks.py probe --port P --seconds S [--interval 0.01] [--source 127.0.0.2]
      Two keep-alive connections from --source, one on each worker (GET /healthz says
      which), each sending GET /healthz every --interval seconds; prints
      {"count","errors","p50_ms","p99_ms","max_ms","workers"}.
  abuse_attacks.py attack CASE --port P --seconds S
      Runs one abuse case (see CASES and bench/abuse_bench.py) and prints what it saw.
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
import threading
import time

CASES = ("benign", "deepjson", "continuation", "continuation_ignore", "firstpolls", "racingpolls", "slowloris", "flood_nolimit", "flood",
         "large_paced", "large")
PROBE_SOURCE = "127.0.0.2"


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


def attack_continuation(port, seconds, clients=2, cap_bytes=64 << 20, honor_close=True):
    """A text frame without FIN, then empty continuation frames until the server cuts the
    connection (or `cap_bytes` went unanswered: then it was not cut). With honor_close
    False the client ignores the server's close frame and streams on until the
    connection is reset (no cap)."""
    if not honor_close:
        cap_bytes = 1 << 62
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
                    if not honor_close:
                        continue
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


def attack_large(port, seconds, clients=4, every=None):
    """`clients` keep-alive connections publishing 1 MB documents back to back, or each
    one every `every` seconds (a fixed offered load that any build can keep up with)."""
    doc = big_document()
    alive = until(seconds)
    out = {"publishes": 0, "status": {}, "errors": 0, "bytes": len(doc)}
    lock = threading.Lock()

    def one(i):
        s = None
        next_t = time.monotonic() + (every or 0) * i / clients  # paced clients take turns
        while alive():
            if every:
                time.sleep(max(0.0, next_t - time.monotonic()))
                next_t = max(next_t + every, time.monotonic())
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


ATTACKS = {"benign": attack_benign, "deepjson": attack_deepjson, "continuation": attack_continuation,
           "continuation_ignore": lambda port, seconds: attack_continuation(port, seconds, honor_close=False),
           "firstpolls": attack_firstpolls, "racingpolls": attack_racingpolls, "slowloris": attack_slowloris,
           "flood_nolimit": attack_flood, "flood": attack_flood,
           "large_paced": lambda port, seconds: attack_large(port, seconds, every=0.5), "large": attack_large}



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
