"""Benchmarks of issue 13, the Redis engine (driven by bench/run.py: --only
redis,rediscost,redisplace,rediskill, or `redis` for the cross-host fan-out alone).

Every part starts its own redis-server on a loopback port (no persistence) and
supervisors with `[bus] engine = "redis"` on other loopback ports: two supervisors on one
machine stand for two hosts (each speaks Redis once, in its hub).

(redis) Cross-host fan-out: 10,000 WebSocket subscribers on host B, the publisher on
    host A (wsload fanout --publish-port), against the local engine on one host (the
    same wsload, publisher and subscribers on one supervisor), interleaved in the same
    run. Reported: deliveries/s, publish-to-delivery p50/p99, and server CPU per
    delivery from /proc, sampled from the first publish to the last delivery: for Redis,
    both supervisors and their workers (A's and B's shown apart), with Redis's own CPU
    beside it, not in the sum. Goal: at most 1.5x the local engine's CPU per delivery
    at the same p99.
(rediscost) What Redis pays: CPU per publish (INFO cpu before/after a run of publishes
    through the product, less Redis's idle rate measured just before) and EVALSHA's own
    time (INFO commandstats); round trips per publish (MONITOR over a short run: commands
    sent by the hubs per publish, the script's inner calls shown apart); Redis
    subscriptions per channel (PUBSUB NUMSUB, CLIENT LIST) with several workers and
    local subscribers per host; bytes in Redis per stored message (MEMORY USAGE of the
    stream and meta keys after N messages of a given size).
(redisplace) Where Redis is spoken: the per-worker alternative, not in the product,
    measured against the same redis-server with raw connections: H hosts x 1 subscribing
    connection (what the product does) against H x W (one per worker), each SUBSCRIBEd
    to the same C channels, while the product's publish script runs N times over those
    channels. Reported: Redis subscriptions and Redis CPU per publish.
(rediskill) The supervisor's death: bench/redis_kill_bench.py.
"""
import http.client
import json
import os
import re
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pubsub_bench as ps

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from wsclient import WsClient  # noqa: E402  (stdlib only)


# ---- Redis: a tiny RESP client and a server ------------------------------------------

class Resp:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def send(self, *args):
        self.sock.sendall(self.encode(*args))

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("redis closed")
                self.buf += chunk
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ValueError(f"bad RESP line {line!r}")

    def call(self, *args):
        self.send(*args)
        r = self.read()
        if isinstance(r, RuntimeError):
            raise r
        return r

    def info(self, section):
        text = self.call("INFO", section).decode()
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))

    def close(self):
        self.sock.close()


class RedisServer:
    def __init__(self, env):
        self.port = env.free_port()
        self.dir = tempfile.mkdtemp(dir=env.WORK, prefix="redis-")
        self.log = open(os.path.join(self.dir, "redis.log"), "wb")
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", self.dir],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        env.wait_port(self.port)
        self.conn = Resp(self.port)

    def cpu(self):
        i = self.conn.info("cpu")
        return float(i["used_cpu_sys"]) + float(i["used_cpu_user"])

    def commandstats(self):
        out = {}
        for k, v in self.conn.info("commandstats").items():
            fields = dict(kv.split("=") for kv in v.split(","))
            out[k.removeprefix("cmdstat_")] = {"calls": int(fields["calls"]), "usec": int(fields["usec"])}
        return out

    def stop(self):
        self.conn.close()
        self.proc.kill()
        self.proc.wait()
        self.log.close()


def redis_bus(redis_port, history_size=1000):
    # Appended to [gateway] by pubsub_bench.dingo_pubsub: the tables after it are ours.
    return f'\n[history]\nsize = {history_size}\n[bus]\nengine = "redis"\nredis = ["127.0.0.1:{redis_port}"]\n'


def supervisor_pids(srv):
    return [srv.proc.pid]


def worker_pids(srv):
    return [p for p in srv.pids() if p != srv.proc.pid]


# ---- (redis) cross-host fan-out ------------------------------------------------------

def bench_crosshost(env, seconds, subscribers=10000, rates=(2, 5, 8)):
    redis = RedisServer(env)
    ports = {k: (env.free_port(), env.free_port()) for k in ("A", "B", "L")}
    servers = {}
    try:
        servers["L"] = ps.dingo_pubsub(env, 2, *ports["L"])
        servers["A"] = ps.dingo_pubsub(env, 2, *ports["A"], gateway_extra=redis_bus(redis.port))
        servers["B"] = ps.dingo_pubsub(env, 2, *ports["B"], gateway_extra=redis_bus(redis.port))
        # Redis's own idle rate with both hosts up (cron, liveness probes, subscriber
        # counts): at a few publishes a second it is most of Redis's CPU in a window.
        c0, t0 = redis.cpu(), time.monotonic()
        time.sleep(3)
        idle_rate = (redis.cpu() - c0) / (time.monotonic() - t0)
        rows = []
        for rate in rates:
            samples = {"local": [], "redis": []}
            for _ in range(env.ROUNDS):
                # Two source addresses per side: the TIME_WAITs of the last runs never
                # exhaust a source's ports.
                common = ["--subscribers", subscribers, "--rate", rate, "--seconds", seconds, "--size", 100]
                # local: one host
                L = servers["L"]
                r, (cpu,) = ps.synced_fanout(env, ["--port", ports["L"][0], "--sources", "127.0.9.1,127.0.9.2", *common],
                                             lambda: [env.cpu_seconds(L.pids())], seconds)
                r["cpu_us_per_delivery"] = cpu / max(r["deliveries"], 1) * 1e6
                r["deliveries_per_s"] = r["deliveries"] / r["seconds"]
                samples["local"].append(r)
                # redis: publisher on A, subscribers on B
                A, B = servers["A"], servers["B"]

                def sample():
                    return [env.cpu_seconds(supervisor_pids(A)), env.cpu_seconds(worker_pids(A)),
                            env.cpu_seconds(supervisor_pids(B)), env.cpu_seconds(worker_pids(B)), redis.cpu()]

                r, parts = ps.synced_fanout(env, ["--port", ports["B"][0], "--publish-port", ports["A"][0],
                                                   "--sources", "127.0.9.3,127.0.9.4", *common],
                                            sample, seconds)
                n = max(r["deliveries"], 1)
                us = [p / n * 1e6 for p in parts]
                r.update(a_sup_us=us[0], a_workers_us=us[1], b_sup_us=us[2], b_workers_us=us[3], redis_us=us[4],
                         cpu_us_per_delivery=sum(us[:4]), redis_us_per_publish=parts[4] / max(r["sent"], 1) * 1e6,
                         redis_net_us_per_publish=(parts[4] - idle_rate * r["window_s"]) / max(r["sent"], 1) * 1e6,
                         redis_idle_us_per_s=idle_rate * 1e6,
                         deliveries_per_s=r["deliveries"] / r["seconds"])
                samples["redis"].append(r)
                print(f"  redis fanout {rate}/s: local {samples['local'][-1]}, redis {r}", file=sys.stderr)
            keys = ("deliveries_per_s", "p50_ms", "p99_ms", "cpu_us_per_delivery")
            med = {"local": {k: env.median([s[k] for s in samples["local"]]) for k in keys},
                   "redis": {k: env.median([s[k] for s in samples["redis"]]) for k in
                             keys + ("a_sup_us", "a_workers_us", "b_sup_us", "b_workers_us", "redis_us",
                                     "redis_us_per_publish", "redis_net_us_per_publish", "redis_idle_us_per_s")}}
            for name, runs in samples.items():
                med[name]["missed"] = sum(s["expected"] - s["deliveries"] for s in runs)
                med[name]["expected"] = sum(s["expected"] for s in runs)
            rows.append((rate, subscribers, med["local"], med["redis"]))
        return rows
    finally:
        for s in servers.values():
            s.stop()
        redis.stop()


# ---- (rediscost) what Redis pays ----------------------------------------------------

class Drain:
    """Reads and discards everything on a set of sockets, in a thread."""

    def __init__(self, socks):
        self.sel = selectors.DefaultSelector()
        for s in socks:
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ)
        self.bytes = 0
        self.last = time.monotonic()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            for key, _ in self.sel.select(0.1):
                try:
                    n = len(key.fileobj.recv(1 << 20))
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    n = 0
                if n == 0:
                    self.sel.unregister(key.fileobj)
                    continue
                self.bytes += n
                self.last = time.monotonic()

    def quiet(self, for_s=0.3, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and time.monotonic() - self.last < for_s:
            time.sleep(0.05)

    def close(self):
        self.stop.set()
        self.thread.join()


def rest_publish(conn, channel, data):
    body = json.dumps(data)
    conn.request("POST", "/v1/publish" + channel, body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    raw = r.read()
    if r.status != 200:
        raise RuntimeError(f"publish {channel}: {r.status} {raw!r}")
    return json.loads(raw)["position"]


def subscribe_clients(port, count, channels):
    clients = []
    for _ in range(count):
        c = WsClient(port)
        for ch in channels:
            reply = c.command("subscribe", channel=ch)
            if not reply.get("ok"):
                raise RuntimeError(f"subscribe {ch}: {reply}")
        clients.append(c)
    return clients


def monitor_run(env, redis, run):
    """Commands Redis received while `run()` ran (MONITOR): a list of (source, name, argc),
    source being the client's address or 'lua' for a script's inner calls."""
    mon = Resp(redis.port)
    mon.call("MONITOR")
    lines = []
    stop = threading.Event()

    def reader():
        mon.sock.settimeout(0.2)
        while not stop.is_set() or mon.buf:
            try:
                line = mon._line()
            except socket.timeout:
                if stop.is_set():
                    break
                continue
            except (ConnectionError, OSError):
                break
            lines.append(line.decode(errors="replace"))

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    time.sleep(0.2)
    result = run()
    time.sleep(0.5)
    stop.set()
    t.join(timeout=5)
    mon.close()
    out = []
    for line in lines:
        m = re.match(r'\+[\d.]+ \[\d+ ([^\]]+)\] (.*)', line)
        if not m:
            continue
        args = re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(2))
        if args:
            out.append((m.group(1), args[0].upper(), len(args)))
    return result, out


def bench_cost(env, seconds=5, rate=1000):
    redis = RedisServer(env)
    ports = {k: (env.free_port(), env.free_port()) for k in ("A", "B")}
    servers, clients, drain = {}, [], None
    result = {}
    try:
        servers["A"] = ps.dingo_pubsub(env, 2, *ports["A"], gateway_extra=redis_bus(redis.port))
        servers["B"] = ps.dingo_pubsub(env, 4, *ports["B"], gateway_extra=redis_bus(redis.port))
        # Subscriptions: 10 channels; host A: 8 connections over 2 workers, host B: 24 over
        # 4 workers, each connection subscribed to every channel (round-robin dispatch
        # spreads them over the workers).
        channels = [f"/cost/{i}" for i in range(10)]
        per_host = {"A": 8, "B": 24}
        for host, n in per_host.items():
            clients += subscribe_clients(ports[host][0], n, channels)
        time.sleep(0.5)
        numsub = redis.conn.call("PUBSUB", "NUMSUB", *[f"dingo:{{{c}}}" for c in channels])
        numsub = [numsub[i + 1] for i in range(0, len(numsub), 2)]
        pubsub_clients = [ln for ln in redis.conn.call("CLIENT", "LIST", "TYPE", "pubsub").decode().splitlines() if ln]
        result["subscriptions"] = {
            "channels": len(channels), "hosts": 2, "workers": {"A": 2, "B": 4},
            "local_subscribers_per_channel": per_host,
            "numsub_per_channel": sorted(set(numsub)),
            "pubsub_connections": len(pubsub_clients),
            "subs_per_pubsub_connection": [int(re.search(r" sub=(\d+)", ln).group(1)) for ln in pubsub_clients],
        }
        print(f"  rediscost subscriptions: {result['subscriptions']}", file=sys.stderr)
        drain = Drain([c.sock for c in clients])

        # CPU per publish: wsload publishes on A to /cost/0 (subscribed on both hosts),
        # its own subscriber on B; Redis's idle rate (probes, counts, cron) is taken off.
        t0, c0 = time.monotonic(), redis.cpu()
        time.sleep(3)
        idle_rate = (redis.cpu() - c0) / (time.monotonic() - t0)
        stats0 = redis.commandstats()
        t_start = [0.0]

        def sample():
            t_start[0] = time.monotonic()
            return [redis.cpu(), t_start[0]]

        r, (cpu, elapsed) = ps.synced_fanout(env, ["--port", ports["B"][0], "--publish-port", ports["A"][0],
                                                   "--channel", "/cost/0", "--subscribers", 1, "--rate", rate,
                                                   "--seconds", seconds, "--size", 100], sample, seconds)
        drain.quiet()
        stats1 = redis.commandstats()
        published = r["sent"]
        ev = {k: stats1.get(k, {"calls": 0, "usec": 0})["calls"] - stats0.get(k, {"calls": 0})["calls"]
              for k in ("evalsha", "eval")}
        ev_usec = stats1["evalsha"]["usec"] - stats0.get("evalsha", {"usec": 0})["usec"]
        result["cpu"] = {
            "publishes": published, "rate": rate, "seconds": elapsed,
            "redis_cpu_us_per_publish": cpu / published * 1e6,
            "idle_cpu_us_per_s": idle_rate * 1e6,
            "redis_cpu_us_per_publish_net": (cpu - idle_rate * elapsed) / published * 1e6,
            "evalsha_calls": ev["evalsha"], "eval_calls": ev["eval"],
            "evalsha_usec_per_call": ev_usec / max(ev["evalsha"], 1),
            "deliveries": r["deliveries"], "expected": r["expected"],
        }
        print(f"  rediscost cpu: {result['cpu']}", file=sys.stderr)

        # Round trips per publish: MONITOR over 200 publishes.
        def short():
            rr, _ = ps.synced_fanout(env, ["--port", ports["B"][0], "--publish-port", ports["A"][0],
                                           "--channel", "/cost/1", "--subscribers", 1, "--rate", 200,
                                           "--seconds", 1, "--size", 100], lambda: [], 1)
            return rr

        rr, cmds = monitor_run(env, redis, short)
        drain.quiet()
        by = {}
        for source, name, argc in cmds:
            kind = "lua" if source == "lua" else "client"
            # The publish script has 2 keys and 7 arguments: 12 words; the history script 9.
            if name == "EVALSHA" or name == "EVAL":
                name += " (publish)" if argc == 12 else " (history)" if argc == 9 else f" ({argc} words)"
            by[(kind, name)] = by.get((kind, name), 0) + 1
        pubs = rr["sent"]
        result["round_trips"] = {
            "publishes": pubs,
            "client_commands": {n: c for (k, n), c in sorted(by.items()) if k == "client"},
            "lua_commands": {n: c for (k, n), c in sorted(by.items()) if k == "lua"},
            "per_publish": by.get(("client", "EVALSHA (publish)"), 0) / max(pubs, 1)
            + by.get(("client", "EVAL (publish)"), 0) / max(pubs, 1),
        }
        print(f"  rediscost round trips: {result['round_trips']}", file=sys.stderr)

        # Bytes per stored message: N messages of each size into a fresh channel.
        mem = []
        conn = http.client.HTTPConnection("127.0.0.1", ports["A"][0], timeout=10)
        n = 1000
        for size in (10, 100, 1000):
            ch = f"/mem/{size}"
            data = "x" * (size - 2)  # a JSON string: `size` bytes stored
            for _ in range(n):
                rest_publish(conn, ch, data)
            s = redis.conn.call("MEMORY", "USAGE", f"dingo:{{{ch}}}:s", "SAMPLES", "0")
            m = redis.conn.call("MEMORY", "USAGE", f"dingo:{{{ch}}}:m", "SAMPLES", "0")
            xlen = redis.conn.call("XLEN", f"dingo:{{{ch}}}:s")
            mem.append({"size": size, "messages": xlen, "stream_bytes": s, "meta_bytes": m,
                        "bytes_per_message": (s + m) / xlen, "overhead_per_message": (s + m) / xlen - size})
        conn.close()
        result["memory"] = mem
        print(f"  rediscost memory: {mem}", file=sys.stderr)
        result["redis_version"] = redis.conn.info("server")["redis_version"]
        return result
    finally:
        if drain:
            drain.close()
        for c in clients:
            try:
                c.sock.close()
            except OSError:
                pass
        for s in servers.values():
            s.stop()
        redis.stop()


# ---- (redisplace) per host against per worker -------------------------------------------

def publish_script():
    """The product's publish script, read from core/RedisChannelStore.cpp."""
    with open(os.path.join(ROOT, "core", "RedisChannelStore.cpp")) as f:
        src = f.read()
    m = re.search(r'kPublishLua = R"lua\((.*?)\)lua"', src, re.S)
    return m.group(1)


def place_run(redis, connections, channels, publishes, size, prefix, batch_size, idle_rate):
    """`connections` raw connections each SUBSCRIBEd to every channel of `channels`; the
    publish script run `publishes` times round-robin over them, `batch_size` at a time
    (1: each waits for the last one's reply, as a hub publishing at a moderate rate;
    more: pipelined, as a busy hub). Returns Redis's CPU and EVALSHA time per publish and its subscription count."""
    subs = []
    names = [f"{prefix}:{{/c{i}}}" for i in range(channels)]
    for _ in range(connections):
        c = Resp(redis.port)
        c.send("SUBSCRIBE", *names)
        for _ in names:
            c.read()
        subs.append(c)
    numsub = redis.conn.call("PUBSUB", "NUMSUB", *names)
    subscriptions = sum(numsub[i + 1] for i in range(0, len(numsub), 2))
    drain = Drain([c.sock for c in subs])
    script = publish_script()
    sha = redis.conn.call("SCRIPT", "LOAD", script).decode()
    pub = Resp(redis.port)
    data = "x" * size
    stats0 = redis.commandstats()
    time.sleep(0.5)
    t0, c0 = time.monotonic(), redis.cpu()
    done = 0
    while done < publishes:
        batch = min(batch_size, publishes - done)
        pub.sock.sendall(b"".join(
            Resp.encode("EVALSHA", sha, 2, f"{prefix}:{{/c{(done + i) % channels}}}:m",
                        f"{prefix}:{{/c{(done + i) % channels}}}:s", f"{prefix}:{{/c{(done + i) % channels}}}",
                        data, 100, 300000, 3900000, "e%010d" % (done + i), 0) for i in range(batch)))
        for _ in range(batch):
            r = pub.read()
            if isinstance(r, RuntimeError):
                raise r
        done += batch
    drain.quiet()
    cpu = redis.cpu() - c0
    elapsed = time.monotonic() - t0
    stats1 = redis.commandstats()
    ev = stats1["evalsha"]["calls"] - stats0.get("evalsha", {"calls": 0})["calls"]
    usec = stats1["evalsha"]["usec"] - stats0.get("evalsha", {"usec": 0})["usec"]
    mem = redis.conn.info("memory")
    drain.close()
    pub.close()
    for c in subs:
        c.close()
    return {"connections": connections, "subscriptions": subscriptions,
            "subscriptions_per_channel": subscriptions / channels, "publishes": publishes,
            "cpu_us_per_publish": (cpu - idle_rate * elapsed) / publishes * 1e6, "evalsha_us_per_call": usec / max(ev, 1),
            "seconds": elapsed, "received_mb": drain.bytes / 1e6, "used_memory": int(mem["used_memory"])}


def bench_place(env, hosts=2, workers=16, channels=100, publishes=10000, size=100, batches=(1, 50)):
    redis = RedisServer(env)
    rows = []
    try:
        # Redis's idle rate (its cron), taken off each run's CPU.
        idle0, t0 = redis.cpu(), time.monotonic()
        time.sleep(3)
        idle = (redis.cpu() - idle0) / (time.monotonic() - t0)
        for rnd in range(env.ROUNDS):
            for batch in batches:
                for label, conns in (("per host", hosts), ("per worker", hosts * workers)):
                    r = place_run(redis, conns, channels, publishes, size, f"place{rnd}.{batch}.{conns}", batch, idle)
                    r.update(variant=label, batch=batch)
                    rows.append(r)
                    print(f"  redisplace {label}, batches of {batch}: {r}", file=sys.stderr)
    finally:
        redis.stop()
    out = []
    for batch in batches:
        for label in ("per host", "per worker"):
            runs = [r for r in rows if r["variant"] == label and r["batch"] == batch]
            med = {k: env.median([r[k] for r in runs]) for k in ("cpu_us_per_publish", "evalsha_us_per_call", "seconds")}
            med.update(variant=label, batch=batch, connections=runs[0]["connections"],
                       subscriptions=runs[0]["subscriptions"],
                       subscriptions_per_channel=runs[0]["subscriptions_per_channel"])
            out.append(med)
    return {"hosts": hosts, "workers": workers, "channels": channels, "publishes": publishes, "size": size,
            "idle_cpu_us_per_s": idle * 1e6, "rows": out}


# ---- tables -------------------------------------------------------------------------------

def print_tables(crosshost_rows, cost, place):
    if crosshost_rows:
        print()
        print("| (redis) cross-host fan-out | offered deliveries/s | local deliveries/s | redis deliveries/s | "
              "local p50 / p99 ms | redis p50 / p99 ms | local CPU µs/delivery | redis CPU µs/delivery "
              "(A sup + A workers + B sup + B workers) | CPU ratio | Redis CPU µs/delivery (µs/publish) | "
              "missed, all rounds (local / redis) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for rate, subs, l, r in crosshost_rows:
            print(f"| {rate} msg/s × {subs:,} subscribers | {rate * subs:,} | {l['deliveries_per_s']:,.0f} | "
                  f"{r['deliveries_per_s']:,.0f} | {l['p50_ms']:.1f} / {l['p99_ms']:.1f} | "
                  f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f} | {l['cpu_us_per_delivery']:.2f} | "
                  f"{r['cpu_us_per_delivery']:.2f} ({r['a_sup_us']:.3f} + {r['a_workers_us']:.3f} + "
                  f"{r['b_sup_us']:.3f} + {r['b_workers_us']:.2f}) | "
                  f"{r['cpu_us_per_delivery'] / max(l['cpu_us_per_delivery'], 1e-9):.2f}× | "
                  f"{r['redis_us']:.4f} ({r['redis_us_per_publish']:.0f}; {r['redis_net_us_per_publish']:.0f} less the idle "
                  f"{r['redis_idle_us_per_s']:.0f} µs/s) | "
                  f"{l['missed']:,} of {l['expected']:,} / {r['missed']:,} of {r['expected']:,} |")
    if cost:
        s, c, rt = cost["subscriptions"], cost["cpu"], cost["round_trips"]
        print()
        print("| (rediscost) figure | value |")
        print("|---|---|")
        print(f"| Redis CPU per publish (through the product, 2 hosts subscribed) | {c['redis_cpu_us_per_publish']:.1f} µs "
              f"({c['redis_cpu_us_per_publish_net']:.1f} µs less the idle rate of {c['idle_cpu_us_per_s']:.0f} µs/s; "
              f"{c['publishes']} publishes at {c['rate']}/s) |")
        print(f"| EVALSHA's own time per call (INFO commandstats) | {c['evalsha_usec_per_call']:.1f} µs "
              f"({c['evalsha_calls']} EVALSHA, {c['eval_calls']} EVAL) |")
        print(f"| round trips per publish (MONITOR, {rt['publishes']} publishes) | {rt['per_publish']:.2f} |")
        print(f"| commands from the hubs in that window | {rt['client_commands']} |")
        print(f"| commands run inside scripts in that window | {rt['lua_commands']} |")
        print(f"| Redis subscriptions per channel ({s['hosts']} hosts; workers {s['workers']}; local subscribers "
              f"per channel {s['local_subscribers_per_channel']}) | {s['numsub_per_channel']} (PUBSUB NUMSUB over "
              f"{s['channels']} channels); {s['pubsub_connections']} pub/sub connections, "
              f"SUBSCRIBEd to {s['subs_per_pubsub_connection']} channels each (10 + the liveness probe's) |")
        for m in cost["memory"]:
            print(f"| bytes in Redis per stored message, {m['size']} B data ({m['messages']} in the stream) | "
                  f"{m['bytes_per_message']:.0f} B ({m['overhead_per_message']:.0f} B over the data; stream "
                  f"{m['stream_bytes']:,} B + meta {m['meta_bytes']} B) |")
    if place:
        print()
        print(f"| (redisplace) {place['hosts']} hosts × {place['workers']} workers, {place['channels']} channels, "
              f"{place['publishes']:,} publishes of {place['size']} B | subscribing connections | Redis subscriptions "
              f"(per channel) | Redis CPU µs/publish (less its idle {place['idle_cpu_us_per_s']:.0f} µs/s) | "
              f"EVALSHA µs/call | ratio |")
        print("|---|---:|---:|---:|---:|---:|")
        base = {}
        for r in place["rows"]:
            base.setdefault(r["batch"], r["cpu_us_per_publish"])
            print(f"| {r['variant']}, " + ("one publish per round trip" if r["batch"] == 1 else
                                            f"pipelined by {r['batch']}") + f" | {r['connections']} | {r['subscriptions']:,} ({r['subscriptions_per_channel']:.0f}) | "
                  f"{r['cpu_us_per_publish']:.1f} | {r['evalsha_us_per_call']:.1f} | {r['cpu_us_per_publish'] / base[r['batch']]:.2f}× |")
