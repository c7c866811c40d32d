"""(rediskill) What pub/sub does when a supervisor dies (issue 13, "where Redis is
spoken"; driven by bench/run.py --only rediskill).

Redis engine: subscribers on host B, a publisher on host A (REST, a fixed rate). B's
supervisor is killed with SIGKILL and started again at once with the same configuration;
it adopts the old workers (a few idle WebSockets without subscriptions keep each worker
alive: an orphan with no connection left exits at once). The workers close their
subscribed WebSockets with the reconnect event and 1012 when their hub goes; the
subscribers reconnect at once (every 20 ms until it works, no back-off: the server's
after_ms hint is ignored, so the pause is the server's) and resubscribe from their last
position.
Local engine, for comparison: the same on one host, the publisher on it too (its
publishes fail while no supervisor runs, and the new hub's history starts empty).

Reported per engine: the delivery pause per subscriber (the longest time without a
message from half a second before the kill on), when the subscribers had resubscribed,
the time until every old worker was adopted, resumes answered recovered:true / false,
and silent losses and duplicates (positions missing or repeated within an epoch after
the subscriber's first message in it; what a recovered:false told the client about is
not silent).
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pubsub_bench as ps
from redis_bench import ROOT, RedisServer, redis_bus

sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from wsclient import Closed, WsClient  # noqa: E402  (stdlib only)


class Subscriber(threading.Thread):
    """One WebSocket subscriber that reconnects at once with its last position,
    recording every message's position and arrival time."""

    def __init__(self, port, channel, source):
        super().__init__(daemon=True)
        self.port, self.channel, self.source = port, channel, source
        self.got = []  # (epoch, seq, monotonic time)
        self.resumes = []  # (recovered, messages in the reply, time)
        self.closes = []  # (code, time)
        self.position = None
        self.stop = threading.Event()
        self.ready = threading.Event()

    def take(self, m):
        epoch, seq = m["position"].rsplit(".", 1)
        self.got.append((epoch, int(seq), time.monotonic()))

    def run(self):
        while not self.stop.is_set():
            try:
                c = WsClient(self.port, timeout=2, source=self.source)
            except (OSError, Closed, AssertionError):
                time.sleep(0.02)
                continue
            try:
                fields = {"channel": self.channel}
                if self.position:
                    fields["since"] = self.position
                reply = c.command("subscribe", **fields)
                if not reply.get("ok"):
                    time.sleep(0.02)
                    continue
                if self.position:
                    self.resumes.append((reply.get("recovered"), len(reply.get("messages", [])), time.monotonic()))
                for m in reply.get("messages", []):
                    self.take(m)
                self.position = reply["position"]
                self.ready.set()
                while not self.stop.is_set():
                    try:
                        m = c.next_message(timeout=0.5)
                    except socket.timeout:
                        continue
                    if m.get("event") == "message":
                        self.take(m)
                        self.position = m["position"]
            except Closed as e:
                self.closes.append((e.code, time.monotonic()))
            except OSError:
                self.closes.append((None, time.monotonic()))
            finally:
                c.sock.close()


def status(env, control):
    r = subprocess.run([os.path.join(env.BUILD, "bin", "dingoctl"), "--socket", control, "status", "--json"],
                       capture_output=True, text=True, timeout=20)
    return json.loads(r.stdout) if r.returncode == 0 else None


def kill_run(env, engine, subscribers, rate, before_s, after_s):
    redis = RedisServer(env) if engine == "redis" else None
    bus = redis_bus(redis.port) if redis else ""
    ports = {k: (env.free_port(), env.free_port()) for k in ("A", "B")}
    servers, subs, idle = {}, [], []
    old_workers, new_sup, new_log = [], None, None
    try:
        if redis:
            servers["A"] = ps.dingo_pubsub(env, 2, *ports["A"], gateway_extra=bus)
        B = servers["B"] = ps.dingo_pubsub(env, 2, *ports["B"], gateway_extra=bus)
        pub_port = ports["A"][0] if redis else ports["B"][0]
        idle = [WsClient(ports["B"][0]) for _ in range(4)]  # two per worker (round-robin)
        for i in range(subscribers):
            s = Subscriber(ports["B"][0], "/kill", f"127.0.8.{1 + i}")
            s.start()
            subs.append(s)
        for s in subs:
            if not s.ready.wait(10):
                raise RuntimeError("a subscriber never subscribed")
        published, failed = [], [0]
        stop = threading.Event()

        def publisher():
            conn = http.client.HTTPConnection("127.0.0.1", pub_port, timeout=2)
            t0, k = time.monotonic(), 0
            while not stop.is_set():
                k += 1
                try:
                    conn.request("POST", "/v1/publish/kill", body=json.dumps({"k": k}))
                    r = conn.getresponse()
                    body = r.read()
                    if r.status == 200:
                        published.append(json.loads(body)["position"])
                    else:
                        failed[0] += 1
                except OSError:
                    failed[0] += 1
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", pub_port, timeout=2)
                time.sleep(max(0, t0 + k / rate - time.monotonic()))
            conn.close()

        pt = threading.Thread(target=publisher, daemon=True)
        pt.start()
        time.sleep(before_s)
        old_workers = sorted(w["pid"] for w in status(env, B.control)["workers"])
        config = B.proc.args[-1]
        t_kill = time.monotonic()
        os.kill(B.proc.pid, signal.SIGKILL)
        B.proc.wait()
        new_log = open(os.path.join(env.WORK, f"dingo-restarted-{engine}.log"), "ab")
        new_sup = subprocess.Popen([os.path.join(env.BUILD, "bin", "dingo-supervisor"), "--config", config],
                                   stdout=new_log, stderr=subprocess.STDOUT, start_new_session=True)
        adopted_ms = None
        while time.monotonic() - t_kill < 20:
            st = status(env, B.control)
            if st and sorted(w["pid"] for w in st["workers"] if w.get("adopted") and w["state"] == "ready") == old_workers:
                adopted_ms = (time.monotonic() - t_kill) * 1000
                break
            time.sleep(0.01)
        time.sleep(after_s)
        stop.set()
        pt.join()
        time.sleep(1.0)
        for s in subs:
            s.stop.set()
        for s in subs:
            s.join(timeout=5)
        by_epoch = {}
        for p in published:
            e, q = p.rsplit(".", 1)
            by_epoch.setdefault(e, []).append(int(q))
        runs = []
        for s in subs:
            times = [t for _, _, t in s.got]
            gaps = [b - a for a, b in zip(times, times[1:]) if b > t_kill - 0.5]
            missing = dup = 0
            for e, want in by_epoch.items():
                seqs = [q for ep, q, _ in s.got if ep == e]
                if not seqs:
                    continue
                missing += len({q for q in want if q >= min(seqs)} - set(seqs))
                dup += len(seqs) - len(set(seqs))
            runs.append({"pause_ms": max(gaps) * 1000 if gaps else None,
                         "resubscribed_ms": (s.resumes[0][2] - t_kill) * 1000 if s.resumes else None,
                         "closes": [c for c, _ in s.closes], "recovered": [r for r, _, _ in s.resumes],
                         "missing": missing, "duplicates": dup})
        idle_open = 0
        for c in idle:
            try:
                idle_open += c.command("ping").get("ok") is True
            except (Closed, OSError):
                pass
        return {"engine": engine, "subscribers": subscribers, "rate": rate, "published": len(published),
                "publish_failed": failed[0], "adopted_ms": adopted_ms, "idle_open": idle_open, "idle": len(idle),
                "runs": runs}
    finally:
        for s in subs:
            s.stop.set()
        for c in idle:
            c.sock.close()
        if new_sup:
            os.killpg(new_sup.pid, signal.SIGTERM)
            try:
                new_sup.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(new_sup.pid, signal.SIGKILL)
                new_sup.wait()
            new_log.close()
        for pid in old_workers:  # adopted: not the new supervisor's children
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for srv in servers.values():
            if srv.proc.poll() is None:
                srv.stop()
            else:
                srv.log.close()
        if redis:
            redis.stop()


def bench_kill(env, subscribers=20, rate=100, before_s=2.0, after_s=4.0):
    out = []
    for engine in ("redis", "local"):
        r = kill_run(env, engine, subscribers, rate, before_s, after_s)
        print(f"  rediskill {engine}: {r}", file=sys.stderr)
        out.append(r)
    return out


def print_table(results):
    if not results:
        return
    print()
    print("| (rediskill) supervisor kill -9 + restart | delivery pause per subscriber, min / median / max | "
          "resubscribed after the kill, median | old workers adopted after | idle WebSockets still open | "
          "resumes recovered:true / false | silent losses / duplicates | publishes failed / acknowledged |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for k in results:
        pauses = sorted(r["pause_ms"] for r in k["runs"] if r["pause_ms"] is not None)
        recon = sorted(r["resubscribed_ms"] for r in k["runs"] if r["resubscribed_ms"] is not None)
        where = ("Redis engine: subscribers on B, publisher on A" if k["engine"] == "redis"
                 else "local engine: one host")
        pause = f"{pauses[0]:.0f} / {pauses[len(pauses) // 2]:.0f} / {pauses[-1]:.0f} ms" if pauses else "-"
        resub = f"{recon[len(recon) // 2]:.0f} ms" if recon else "-"
        adopted = f"{k['adopted_ms']:.0f} ms" if k["adopted_ms"] else "never"
        print(f"| {where}, {k['subscribers']} subscribers, {k['rate']} msg/s | {pause} | {resub} | {adopted} | "
              f"{k['idle_open']} of {k['idle']} | "
              f"{sum(x is True for r in k['runs'] for x in r['recovered'])} / "
              f"{sum(x is False for r in k['runs'] for x in r['recovered'])} | "
              f"{sum(r['missing'] for r in k['runs'])} / {sum(r['duplicates'] for r in k['runs'])} | "
              f"{k['publish_failed']} / {k['published']} |")
