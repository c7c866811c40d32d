"""Issue 15 point 3: one million idle connections on one box (bench/run.py --only million;
not in the default list).

An idle client here is what a user of dingo would call one: a WebSocket that completed its
upgrade, subscribed to a channel (connection i to /idle/(i % 1000), the subscription
confirmed by the server) and then says nothing. WebSockets have no idle deadline in the
gateway (idle_timeout is HTTP keep-alive's, header/handshake deadlines end at the
upgrade); the only thing that closes a quiet WebSocket is a missed pong, and wsload
answers pings. ping_interval is raised to 10 minutes (the helper's config) so the hold is
idle; a ping round every 25 s would be a load of its own (40,000 pings/s at 1M).

The fd limit is 20,000 per process and cannot be raised, so the supervisor runs enough
workers (18,000 connections each) and enough `wsload idle` processes (18,000 sockets
each, one epoll loop), each from its own 127.100.x.1 source address so that no source
runs out of ephemeral ports. Connections are ramped in steps (100k, 250k, 500k, 1M by
default); each step records its figures, so a stop part-way still reports the largest
count that held. The ramp stops before MemAvailable falls under 4 GiB (the machine is
shared), if fs.file-nr would pass fs.file-max, if a step's connects fail, or at the
step deadline. Everything is bounded: each wsload exits by itself after --hold, and
every process is stopped on the way out.

Per step: the set-up time of the step (launch to the last client's "all confirmed"), the
server's count of open connections before and after a 10 s hold, the workers' RSS per
connection (delta from before the first connection), the clients' RSS, the kernel's
socket memory (/proc/net/sockstat TCP mem in pages; /proc/slabinfo caches; Slab in
/proc/meminfo), MemAvailable, and the supervisor's RSS and CPU (% of one core) while the
connections arrive.
"""
import json
import os
import selectors
import signal
import subprocess
import sys
import time

import pubsub_bench

PER_CLIENT = 18000  # sockets per wsload process (fd limit 20,000)
PER_WORKER = 18000  # connections per worker
MEM_FLOOR_KB = 4 * 1024 * 1024  # stop the ramp before MemAvailable falls under this
STEP_DEADLINE_S = 900
HOLD_S = 10
SLABS = ("TCP", "tw_sock_TCP", "request_sock_TCP", "sock_inode_cache", "filp", "dentry", "eventpoll_epi",
         "eventpoll_pwq", "skbuff_head_cache", "kmalloc-64", "kmalloc-128", "kmalloc-192", "kmalloc-256",
         "kmalloc-512", "kmalloc-1k", "kmalloc-2k", "kmalloc-4k", "selinux_file_security", "lsm_file_cache")


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def meminfo():
    out = {}
    for line in read("/proc/meminfo").splitlines():
        k, v = line.split(":", 1)
        out[k] = int(v.split()[0])
    return out


def sockstat():
    for line in read("/proc/net/sockstat").splitlines():
        if line.startswith("TCP:"):
            f = line.split()[1:]
            return {f[i]: int(f[i + 1]) for i in range(0, len(f), 2)}
    return {}


def slabs():
    """Bytes held by the caches in SLABS (num_objs × objsize), or {} if unreadable."""
    out = {}
    for line in read("/proc/slabinfo").splitlines()[2:]:
        f = line.split()
        if f and f[0] in SLABS:
            out[f[0]] = {"objs": int(f[2]), "bytes": int(f[2]) * int(f[3])}
    return out


def listen_drops():
    """TcpExt ListenOverflows + ListenDrops: SYNs or connects the listen queue turned away."""
    lines = [l.split() for l in read("/proc/net/netstat").splitlines() if l.startswith("TcpExt:")]
    if len(lines) < 2:
        return 0
    d = dict(zip(lines[0][1:], lines[1][1:]))
    return int(d.get("ListenOverflows", 0)) + int(d.get("ListenDrops", 0))


def file_nr():
    f = read("/proc/sys/fs/file-nr").split()
    return int(f[0]) if f else 0


def limits():
    names = ["fs/file-max", "fs/nr_open", "net/ipv4/tcp_mem", "net/core/somaxconn", "net/ipv4/tcp_max_syn_backlog",
             "net/ipv4/ip_local_port_range", "net/ipv4/tcp_max_orphans", "net/ipv4/tcp_max_tw_buckets",
             "net/netfilter/nf_conntrack_max", "net/netfilter/nf_conntrack_count"]
    out = {n.split("/")[-1]: " ".join(read(f"/proc/sys/{n}").split()) or "n/a" for n in names}
    out["RLIMIT_NOFILE hard"] = read("/proc/self/limits").split("Max open files")[1].split()[1]
    return out


def server_connections(env, sup):
    r = subprocess.run([os.path.join(env.BUILD, "bin", "dingoctl"), "--socket", sup.control, "status", "--json"],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        return -1
    return sum(w.get("connections", 0) for w in json.loads(r.stdout)["workers"])


class Clients:
    """The wsload processes; each one's first line says its connections are up."""

    def __init__(self, env, port, hold_s):
        self.env, self.port, self.hold_s = env, port, hold_s
        self.procs, self.results = [], []

    def launch(self, count):
        i = len(self.procs)
        # Eight source addresses per process, 2,250 sockets each: connect() searches the
        # ephemeral range for a free port per (source, destination), and with one source
        # filled to 18,000 of its ~14,000 odd ports that search cost ~4 ms of kernel time
        # per connect (measured), which capped the ramp at ~100 connections/s.
        src = ",".join(f"127.{100 + i // 250}.{i % 250}.{k}" for k in range(1, 9))
        args = pubsub_bench.wsload(self.env, "idle", "--port", self.port, "--count", count, "--sources", src,
                                   "--concurrency", 64, "--subscribe", "--channel", "/idle", "--channels", 1000,
                                   "--hold", self.hold_s)
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def pids(self):
        return [p.pid for p in self.procs if p.poll() is None]

    def stop(self):
        dropped = 0
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                out, _ = p.communicate(timeout=60)
                for line in out.splitlines():
                    if line.startswith('{"held"'):
                        dropped += json.loads(line)["dropped"]
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return dropped


def run_step(env, sup, clients, target, have, baseline):
    """Opens target - have more connections; returns (row, why-stopped or None)."""
    launched = []
    want = target - have
    while want > 0:
        n = min(PER_CLIENT, want)
        launched.append(clients.launch(n))
        want -= n
    sel = selectors.DefaultSelector()
    for p in launched:
        sel.register(p.stdout, selectors.EVENT_READ, p)
    results, why = [], None
    t0 = time.time()
    sup_cpu0 = env.cpu_seconds([sup.proc.pid])
    sup_rss_max, mem_min = 0, meminfo()["MemAvailable"]
    drops0 = listen_drops()
    last_note = t0
    while len(results) < len(launched):
        for key, _ in sel.select(timeout=0.5):
            line = key.fileobj.readline()
            sel.unregister(key.fileobj)
            results.append(json.loads(line) if line.startswith("{") else
                           {"connected": 0, "failed": -1, "subscribed": 0, "error": key.data.stderr.read()[:300]})
        sup_rss_max = max(sup_rss_max, pubsub_bench.rss_kb(sup.proc.pid))
        mem = meminfo()["MemAvailable"]
        mem_min = min(mem_min, mem)
        if time.time() - last_note > 20:
            last_note = time.time()
            print(f"  million: {time.time() - t0:.0f} s into step {target}: sockstat TCP inuse "
                  f"{sockstat().get('inuse', 0)}, MemAvailable {mem / 1048576:.1f} GiB", file=sys.stderr)
        if mem < MEM_FLOOR_KB:
            why = f"memory: MemAvailable {mem / 1048576:.1f} GiB < 4 GiB floor during the step"
            break
        if time.time() - t0 > STEP_DEADLINE_S:
            why = f"time: step not done in {STEP_DEADLINE_S} s"
            break
    setup_s = time.time() - t0
    sup_cpu = env.cpu_seconds([sup.proc.pid]) - sup_cpu0
    sel.close()
    connected = sum(r["connected"] for r in results)
    subscribed = sum(r.get("subscribed", 0) for r in results)
    failed = sum(max(r["failed"], 0) for r in results)
    errors = [r["error"] for r in results if "error" in r]
    time.sleep(3)  # settle: buffers back, hand-off queues empty
    row = figures(env, sup, clients, target, baseline)
    row.update(requested=target - have, connected_step=connected, subscribed_step=subscribed, failed_step=failed,
               setup_s=setup_s, rate_per_s=connected / max(setup_s, 1e-9), supervisor_cpu_pct=100 * sup_cpu / setup_s,
               supervisor_rss_max_kb=sup_rss_max, listen_drops=listen_drops() - drops0, mem_available_min_kb=mem_min, errors=errors[:3])
    if why is None and (errors or connected < 0.99 * (target - have) or subscribed < 0.99 * connected):
        why = (f"connects failed: {connected} of {target - have} connected, {subscribed} subscribed, {failed} failed"
               + (f"; {errors[0]}" if errors else ""))
    if why is None:
        time.sleep(HOLD_S)
        row["held_after_hold"] = server_connections(env, sup)
        if row["held_after_hold"] < 0.99 * target:
            why = f"connections lost while idle: {row['held_after_hold']} of {target} held after {HOLD_S} s"
    return row, why


def figures(env, sup, clients, target, baseline):
    m, ss, sl = meminfo(), sockstat(), slabs()
    workers_kb = sum(pubsub_bench.rss_kb(p) for p in sup.worker_pids)
    held = server_connections(env, sup)
    slab_delta = {k: v["bytes"] - baseline["slabs"].get(k, {"bytes": 0})["bytes"] for k, v in sl.items()}
    n = max(held, 1)
    return {
        "target": target, "held": held,
        "workers_rss_kb": workers_kb, "workers_kb_per_conn": (workers_kb - baseline["workers_kb"]) / n,
        "clients_rss_kb": sum(pubsub_bench.rss_kb(p) for p in clients.pids()),
        "supervisor_rss_kb": pubsub_bench.rss_kb(sup.proc.pid),
        "tcp_inuse": ss.get("inuse", 0), "tcp_mem_pages": ss.get("mem", 0), "tcp_tw": ss.get("tw", 0),
        "slab_kb_delta": (m["Slab"] - baseline["mem"]["Slab"]),
        "sunreclaim_kb_delta": (m["SUnreclaim"] - baseline["mem"]["SUnreclaim"]),
        "slab_bytes_per_conn": {k: v / n for k, v in slab_delta.items() if v > 0},
        "mem_available_kb": m["MemAvailable"],
        "mem_used_kb_per_conn": (baseline["mem"]["MemAvailable"] - m["MemAvailable"]) / n,
        "file_nr": file_nr(), "loadavg": read("/proc/loadavg").split()[:3],
    }


def bench_million(env, steps=(100000, 250000, 500000, 1000000)):
    steps = sorted(steps)
    workers = max(1, -(-steps[-1] // PER_WORKER))
    lim = limits()
    print(f"  million: {workers} workers, limits {lim}", file=sys.stderr)
    plain, tls = env.free_port(), env.free_port()
    def on_term(*_):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM must not cut the clean-up short
        sys.exit("million: SIGTERM")

    old_term = signal.signal(signal.SIGTERM, on_term)
    sup = pubsub_bench.dingo_pubsub(env, workers, plain, tls)
    # Each wsload exits by itself after this long, even if we die.
    clients = Clients(env, plain, hold_s=len(steps) * (STEP_DEADLINE_S + 60))
    rows, stopped, dropped = [], None, 0
    t_start = time.time()
    try:
        time.sleep(2)
        baseline = {"mem": meminfo(), "slabs": slabs(),
                    "workers_kb": sum(pubsub_bench.rss_kb(p) for p in sup.worker_pids)}
        have = 0
        for target in steps:
            mem = meminfo()["MemAvailable"]
            # Every connection costs two fds on one box (client and server).
            if file_nr() + 2 * (target - have) + 10000 > int(lim["file-max"]):
                stopped = f"fs.file-max: {file_nr()} fds in use + {2 * (target - have)} would pass {lim['file-max']}"
                break
            if mem < MEM_FLOOR_KB:
                stopped = f"memory: MemAvailable {mem / 1048576:.1f} GiB < 4 GiB floor before the step"
                break
            row, why = run_step(env, sup, clients, target, have, baseline)
            row["elapsed_s"] = time.time() - t_start
            rows.append(row)
            print(f"  million step {target}: {json.dumps(row)}", file=sys.stderr)
            have = target
            if why:
                stopped = why
                break
    finally:
        dropped = clients.stop()
        sup.stop()
        signal.signal(signal.SIGTERM, old_term)
    held = [r for r in rows if r.get("held_after_hold", 0) >= 0.99 * r["target"]]
    return {"workers": workers, "limits": lim, "rows": rows, "stopped": stopped, "dropped": dropped,
            "largest_held": max((r["held_after_hold"] for r in held), default=0)}


def print_table(result):
    if not result:
        return
    print(f"\n### One million idle connections ({result['workers']} workers, {PER_CLIENT:,} per wsload process; "
          f"idle client = WebSocket subscribed to one of 1,000 channels)\n")
    print("| step | held (server count after 10 s idle) | step set-up s | conn/s | workers' RSS per conn | "
          "clients' RSS | supervisor RSS max / CPU % while arriving | TCP mem pages (sockstat) | Slab delta | "
          "MemAvailable after | box memory per conn | load avg |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in result["rows"]:
        print(f"| {r['target']:,} | {r.get('held_after_hold', r['held']):,} | {r['setup_s']:.1f} | {r['rate_per_s']:.0f} | "
              f"{r['workers_kb_per_conn']:.2f} KB | {r['clients_rss_kb'] / 1024:.0f} MB | "
              f"{r['supervisor_rss_max_kb'] / 1024:.1f} MB / {r['supervisor_cpu_pct']:.0f} % | {r['tcp_mem_pages']} | "
              f"{r['slab_kb_delta'] / 1024:.0f} MB ({r['slab_kb_delta'] / max(r['held'], 1):.2f} KB/conn) | "
              f"{r['mem_available_kb'] / 1048576:.1f} GiB | {r['mem_used_kb_per_conn']:.2f} KB | "
              f"{' '.join(r['loadavg'])} |")
    if result["rows"]:
        last = result["rows"][-1]
        per = ", ".join(f"{k} {v:.0f} B" for k, v in sorted(last["slab_bytes_per_conn"].items(), key=lambda kv: -kv[1]))
        print(f"\nSlab caches per connection at {last['target']:,} (both ends): {per}")
    print(f"\nLargest count held: {result['largest_held']:,}; stopped: {result['stopped'] or 'no (every step held)'}; "
          f"connections the server closed during the run (seen by the clients): {result['dropped']}")
    print(f"\nLimits: {result['limits']}")
