"""Benchmarks of issue "Realtime pub/sub over WebSocket" (driven by bench/run.py).

(a) Idle WebSocket connections: N connections (100,000 by default) held by one machine.
    A process may hold at most 20,000 fds here, so the supervisor runs enough workers
    and several wsload processes open the connections, each from its own 127.0.x.y
    source address. Reported: KB per connection from the workers' RSS delta (and the
    supervisor's, which holds no connection after the hand-off), plain and TLS.
(b) Fan-out: 10,000 subscribers on one channel, 100-byte messages published over
    WebSocket at fixed rates, dingo (supervisor + 2 workers) side by side with one
    Node.js process running npm's ws (bench/node/fanout.js). Reported: deliveries/s,
    publish-to-delivery p50/p99, and the server's CPU time per delivery from /proc,
    sampled from the first publish to the last delivery (wsload --sync brackets it;
    subscriber set-up and teardown fall outside). Rates are medians of the rounds;
    missed deliveries are totals over all rounds.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def dingo_pubsub(env, workers, plain_port, tls_port, gateway_extra=""):
    d = tempfile.mkdtemp(dir=env.WORK, prefix="dingo-ps-")
    conf = f"""
[supervisor]
workers = {workers}
dispatch = "round-robin"
control_socket = "control.sock"
pid_file = "supervisor.pid"
[[listen]]
address = "127.0.0.1:{plain_port}"
[[listen]]
address = "127.0.0.1:{tls_port}"
tls = true
[tls]
cert = "{env.CERTS}/cert.pem"
key = "{env.CERTS}/key.pem"
[gateway]
ping_interval = "10m"
client_publish = true
commands_per_second = 100000
max_connections = 20000
poll_timeout = "60s"
{gateway_extra}
[admin]
address = ""
[log]
level = "warn"
"""
    path = os.path.join(d, "dingo.toml")
    with open(path, "w") as f:
        f.write(conf)
    srv = env.Server("dingo-ps", [os.path.join(env.BUILD, "bin", "dingo-supervisor"), "--config", path], plain_port)
    control = os.path.join(d, "control.sock")
    deadline = time.time() + 20
    while time.time() < deadline:
        r = subprocess.run([os.path.join(env.BUILD, "bin", "dingoctl"), "--socket", control, "status", "--json"],
                           capture_output=True, text=True)
        if r.returncode == 0:
            st = json.loads(r.stdout)
            if sum(w["state"] == "ready" for w in st["workers"]) == workers:
                srv.worker_pids = [w["pid"] for w in st["workers"]]
                srv.control = control
                return srv
        time.sleep(0.2)
    srv.stop()
    raise RuntimeError("dingo workers never became ready")


def wsload(env, *args):
    return [os.path.join(env.BUILD, "bin", "wsload"), *map(str, args)]


# ---- (a) idle ----------------------------------------------------------------------------

def idle_run(env, port, tls, total, clients, sup):
    per = total // clients
    before = {pid: rss_kb(pid) for pid in sup.worker_pids}
    sup_before = rss_kb(sup.proc.pid)
    procs = []
    t0 = time.time()
    for i in range(clients):
        # One source address per client process: 127.0.{10+i}.1 (< 28,000 ports each).
        args = ["idle", "--port", port, "--count", per, "--sources", f"127.0.{10 + i}.1", "--concurrency", 256]
        if tls:
            args.append("--tls")
        procs.append(subprocess.Popen(wsload(env, *args), stdout=subprocess.PIPE, text=True))
    connected = 0
    for p in procs:
        line = p.stdout.readline()
        connected += json.loads(line)["connected"] if line else 0
    setup_s = time.time() - t0
    time.sleep(3)  # settle: every handshake done, every buffer back
    after = {pid: rss_kb(pid) for pid in sup.worker_pids}
    sup_after = rss_kb(sup.proc.pid)
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=60)
    delta_kb = sum(after[p] - before[p] for p in before)
    return {"connected": connected, "wanted": per * clients, "kb_per_conn": delta_kb / max(connected, 1),
            "supervisor_delta_kb": sup_after - sup_before, "setup_s": setup_s,
            "per_worker": [after[p] - before[p] for p in sup.worker_pids]}


def bench_idle(env, total):
    clients = max(1, -(-total // 17000))  # ceil: at most 17,000 connections per client process
    workers = clients  # ditto per worker
    rows = []
    for tls in (False, True):
        plain, tlsport = env.free_port(), env.free_port()
        sup = dingo_pubsub(env, workers, plain, tlsport)
        try:
            r = idle_run(env, tlsport if tls else plain, tls, total, clients, sup)
        finally:
            sup.stop()
        target = 12 if tls else 3
        rows.append(("TLS" if tls else "plain", r, target))
        print(f"  idle {'TLS' if tls else 'plain'}: {r}", file=sys.stderr)
    return rows


# ---- (b) fan-out --------------------------------------------------------------------------

def node_server(env, port):
    node_dir = os.path.join(HERE, "node")
    if not os.path.isdir(os.path.join(node_dir, "node_modules", "ws")):
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=node_dir, check=True,
                       stdout=subprocess.DEVNULL)
    return env.Server("node-ws", ["node", os.path.join(node_dir, "fanout.js"), str(port)], port)


def synced_fanout(env, args, sample, seconds):
    """Runs `wsload fanout --sync` with `args` and returns (result, deltas), where
    `sample()` gives a list of CPU times (seconds) and deltas are their growth from the
    first publish to the last delivery: wsload waits for our "go" before publishing, says
    when the last delivery arrived, and keeps its connections until we close its stdin,
    so neither the subscribers' set-up nor their teardown falls inside the window."""
    p = subprocess.Popen(wsload(env, "fanout", *args, "--sync"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        first = p.stdout.readline()
        if "ready" not in first:
            raise RuntimeError(f"wsload fanout: {first} {p.stderr.read()}")
        before = sample()
        p.stdin.write("go\n")
        p.stdin.flush()
        done = p.stdout.readline()
        cpu = [b - a for a, b in zip(before, sample())]
        if "delivered" not in done:
            raise RuntimeError(f"wsload fanout: {done} {p.stderr.read()}")
        r = json.loads(p.stdout.readline())
        p.stdin.close()
        p.wait(timeout=seconds + 120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    if p.returncode != 0:
        raise RuntimeError(f"wsload fanout failed: {p.stderr.read()}")
    return r, cpu


def fanout_run(env, server, pids, port, subscribers, rate, seconds):
    # Subscribers connect and subscribe first (not measured); server CPU is sampled from
    # the first publish to the last delivery.
    r, (cpu,) = synced_fanout(env, ["--port", port, "--subscribers", subscribers, "--rate", rate,
                                    "--seconds", seconds, "--sources", "127.0.9.1", "--size", 100],
                              lambda: [env.cpu_seconds(pids())], seconds)
    r["cpu_us_per_delivery"] = cpu / max(r["deliveries"], 1) * 1e6
    r["deliveries_per_s"] = r["deliveries"] / r["seconds"]
    return r


def send_floor(env):
    """CPU µs of one loopback send(2) of a pushed message's size: what any server pays
    per delivery here, whatever it is written in."""
    out = subprocess.run(wsload(env, "sendfloor", "--count", 4000, "--rounds", 30, "--size", 160),
                         capture_output=True, text=True, check=True, timeout=300).stdout
    return json.loads(out)["cpu_us_per_send"]


def bench_fanout(env, seconds, subscribers=10000, rates=(2, 5, 8)):
    rows = []
    plain, tlsport, node_port = env.free_port(), env.free_port(), env.free_port()
    sup = dingo_pubsub(env, 2, plain, tlsport)
    node = node_server(env, node_port)
    servers = {"dingo": (sup, plain), "node": (node, node_port)}
    try:
        for rate in rates:
            samples = {"dingo": [], "node": []}
            for _ in range(env.ROUNDS):
                for name, (srv, port) in servers.items():
                    samples[name].append(fanout_run(env, srv, srv.pids, port, subscribers, rate, seconds))
            floor = env.median([send_floor(env) for _ in range(env.ROUNDS)])
            med = {name: {k: env.median([s[k] for s in runs]) for k in
                          ("deliveries_per_s", "p50_ms", "p99_ms", "cpu_us_per_delivery", "window_s")}
                   for name, runs in samples.items()}
            for name, runs in samples.items():  # totals over all rounds: a median hides a bad round
                med[name]["missed"] = sum(s["expected"] - s["deliveries"] for s in runs)
                med[name]["expected"] = sum(s["expected"] for s in runs)
            rows.append((rate, subscribers, med["dingo"], med["node"], floor))
            print(f"  fanout {rate}/s x {subscribers}: dingo {med['dingo']}, node {med['node']}", file=sys.stderr)
    finally:
        sup.stop()
        node.stop()
    return rows


def print_tables(idle_rows, fanout_rows):
    if idle_rows:
        print()
        print("| (a) idle WebSockets | connections | workers' RSS delta per connection | target | "
              "supervisor RSS delta | set-up time |")
        print("|---|---:|---:|---:|---:|---:|")
        for kind, r, target in idle_rows:
            print(f"| {kind} | {r['connected']:,} of {r['wanted']:,} | {r['kb_per_conn']:.2f} KB | ≤ {target} KB | "
                  f"{r['supervisor_delta_kb']} KB | {r['setup_s']:.1f} s |")
    if fanout_rows:
        print()
        print("| (b) fan-out | offered deliveries/s | dingo deliveries/s | node ws deliveries/s | "
              "dingo p50 / p99 ms | node p50 / p99 ms | dingo CPU µs/delivery | node CPU µs/delivery | CPU ratio | "
              "kernel floor µs/send | missed deliveries, all rounds (dingo / node) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for rate, subs, d, n, floor in fanout_rows:
            print(f"| {rate} msg/s × {subs:,} subscribers | {rate * subs:,} | {d['deliveries_per_s']:,.0f} | "
                  f"{n['deliveries_per_s']:,.0f} | {d['p50_ms']:.1f} / {d['p99_ms']:.1f} | "
                  f"{n['p50_ms']:.1f} / {n['p99_ms']:.1f} | {d['cpu_us_per_delivery']:.2f} | "
                  f"{n['cpu_us_per_delivery']:.2f} | {d['cpu_us_per_delivery'] / max(n['cpu_us_per_delivery'], 1e-9):.2f}× | "
                  f"{floor:.2f} | {d['missed']:,} of {d['expected']:,} / {n['missed']:,} of {n['expected']:,} |")
