#!/usr/bin/env python3
"""Benchmarks, each run side by side with its peer in the same run.

  bench/run.py [--build build] [--seconds 5] [--rounds 3]
               [--only tls,plain,handoff,idle,fanout,...,abuse,auth] [--idle-connections 100000]
               [--subscribers 10000] [--trials 20] [--abuse-seconds 10] [--abuse-cases 1,2,...]
               [--auth-connects 1500] [--auth-storm 2000] [--charts-dir bench/img] [--charts-only]
               [--chaos-seconds 600]
               [--million-steps 100000,250000,500000,1000000]

Foundation (peer: nginx):
(a) TLS handshake per request (Connection: close), ECDSA P-256, TLS 1.3 and 1.2: full and
    resumed handshakes with bench/tlsload, and wrk (which resumes sessions: it reuses
    its SSL objects with SSL_clear, keeping the session; dingo's tls_resumed counter
    shows it). The peer is nginx with its defaults and, for the default accept mode,
    also nginx set to dingo's suites in dingo's order; tlsload runs as fast as it goes
    and then at one fixed rate for all three (--rate: equal load, equal batching).
(b) Plain HTTP keep-alive requests/s (wrk).
(c) New plain connections/s through the supervisor against the same gateway standalone
    with SO_REUSEPORT.
(a) and (c) run the supervisor in each [supervisor] accept mode (kernel, handoff) beside
    the peer, in one run.

Pub/sub (see bench/pubsub_bench.py): (idle) idle WebSocket connections, KB each;
(fanout) fan-out to 10,000 subscribers against Node.js with npm's ws.
Operations (see bench/ops_bench.py): (ops) worker and supervisor deaths, requests failed
during reload and upgrade under wrk.
Long-polling and SSE (see bench/polling_bench.py): (held) KB per held poll; (pollcache)
CPU per poll with and without the session cache; (roundtrip) publish-to-delivery for
long-poll, SSE and WebSocket.
nsclient (see bench/nsclient_bench.py): (reconnect) reconnect after a node dies, process
killed and silent black hole; (storm) bench/reconnect_sim, 10,000 simulated clients, our
policy against socket.io-client's and gRPC's.

Hardening (see bench/abuse_bench.py): (abuse) hostile clients against a supervisor with
2 workers while a well-behaved client measures its latency; the last case (large
publishes) is the loop-lag figure.

Redis engine (see bench/redis_bench.py): (redis) cross-host fan-out, 10,000 subscribers on
host B and the publisher on host A, against the local engine; (rediscost) Redis CPU and
round trips per publish, subscriptions per host, bytes per stored message; (redisplace)
Redis spoken once per host against once per worker; (rediskill) delivery pause across a
supervisor's kill -9 and restart.

Auth (see bench/auth_bench.py): (auth) server CPU per new TLS WebSocket connection
without [auth], with an ES256 token found in the worker's cache and with a new token
each time; the token cache's hit rate in a reconnect storm.

Chaos (see bench/chaos_bench.py; only with `--only chaos`, it is not in the default list):
(chaos) the Redis engine on two hosts in network namespaces while workers, supervisors,
whole hosts and Redis are killed and links cut at random; messages published and
delivered, gaps repaired, recovered:false, silent gaps and duplicates (needs root).

Million (see bench/million_bench.py; only with `--only million`, not in the default list):
(million) idle WebSockets, each subscribed to a channel, ramped in steps to one million
(--million-steps) over enough workers and wsload processes; per step the set-up time,
the workers' RSS per connection, the kernel's socket memory and the supervisor's RSS and
CPU while they arrive; where and why the ramp stopped, and the largest count that held.

Servers get the same number of workers (2) and the same certificate. Beside req/s it
reports the servers' CPU time per request (utime + stime of every server process from
/proc), since on 2 cores the load generator itself is often the bottleneck: CPU per
request is the figure a target is judged on, req/s is shown for context. Rates and
costs are medians of the rounds; error counts are totals over all rounds.
Everything listens on 127.0.0.1 and stops by itself. Prints a markdown table.

Charts (bench/charts.py, Debian's python3-matplotlib: run with /usr/bin/python3): the
results behind the main comparisons (tls/plain/handoff CPU per request, fanout, idle,
storm) are saved to CHARTS_DIR/results.json, with the command and date of the run that
measured each, and drawn as PNGs beside it. A run replaces only the parts it measured.
--charts-only measures nothing and redraws every chart from results.json.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TICKS = os.sysconf("SC_CLK_TCK")

sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from harness import free_port  # noqa: E402  (a port never handed out twice in one run)


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total / TICKS


class Server:
    def __init__(self, name, args, port, cwd=None):
        self.name = name
        self.log = open(os.path.join(WORK, f"{name}.log"), "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, cwd=cwd,
                                     start_new_session=True)
        wait_port(port)
        time.sleep(0.5)

    def pids(self):
        return [self.proc.pid] + children(self.proc.pid)

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


class Group:
    """Several server processes measured as one (standalone gateways)."""

    def __init__(self, servers):
        self.servers = servers

    def pids(self):
        return [p for s in self.servers for p in s.pids()]

    def stop(self):
        for s in self.servers:
            s.stop()


def wrk(url, seconds, connections, close):
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if close:
        args += ["-H", "Connection: close"]
    out = subprocess.run(args + [url], capture_output=True, text=True, timeout=seconds + 60).stdout
    m = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests": int(m.group(1)) if m else 0,
            "errors": (sum(int(x) for x in errors.groups()) if errors else 0) + (int(non2xx.group(1)) if non2xx else 0)}


def tlsload(port, seconds, resume, version, rate=0):
    args = [os.path.join(BUILD, "bin", "tlsload"), "--port", str(port), "--seconds", str(seconds),
            "--threads", "8", "--tls", version]
    if resume:
        args.append("--resume")
    if rate:
        args += ["--rate", str(rate)]
    return json.loads(subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout)


def measure(server, run):
    before = cpu_seconds(server.pids())
    t0 = time.time()
    result = run()
    elapsed = time.time() - t0
    cpu = cpu_seconds(server.pids()) - before
    n = max(result["requests"], 1)
    result.update(rps=result["requests"] / elapsed, cpu_us=cpu / n * 1e6, cpu_s=cpu)
    return result


def median(values):
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def rounds(servers, loads):
    """Runs every load against every server, interleaved, ROUNDS times; returns the
    median of each rate and cost per (server, load), and the total of errors over all
    rounds. Interleaving spreads the machine's noise over both sides instead of letting
    it land on one."""
    samples = {}
    for _ in range(ROUNDS):
        for name, server in servers.items():
            for kind, run in loads[name].items():
                samples.setdefault((name, kind), []).append(measure(server, run))
    out = {}
    for key, runs in samples.items():
        out[key] = {k: median([r[k] for r in runs]) for k in ("rps", "cpu_us", "requests")}
        # Errors are a total over every round: a median would hide a round that failed.
        out[key]["errors"] = sum(r["errors"] for r in runs)
        out[key]["resumed"] = sum(r.get("resumed", 0) for r in runs)
        out[key]["all_requests"] = sum(r["requests"] for r in runs)
    return out


# ---- servers ------------------------------------------------------------------------

def dingo_tls_default(key):
    """dingo's default [tls] `key`, read from core/Config.h so that it cannot drift: an
    nginx set to it negotiates what dingo does (nginx's own defaults follow the client's
    order, and OpenSSL's clients list AES-256-GCM-SHA384 first)."""
    with open(os.path.join(ROOT, "core", "Config.h")) as f:
        m = re.search(r"std::string " + key + r' =\s*((?:"[^"]*"\s*)+);', f.read())
    if not m:
        sys.exit(f"bench: no default for [tls] {key} in core/Config.h")
    return "".join(re.findall(r'"([^"]*)"', m.group(1)))


def nginx(plain_port, tls_port, tls_max, dingo_suites=False):
    d = tempfile.mkdtemp(dir=WORK, prefix="nginx-")
    protocols = "TLSv1.2" if tls_max == "1.2" else "TLSv1.2 TLSv1.3"
    suites = (f"ssl_prefer_server_ciphers on; ssl_ciphers {dingo_tls_default('ciphers')};\n"
              f"    ssl_conf_command Ciphersuites {dingo_tls_default('ciphersuites')};") if dingo_suites else ""
    conf = f"""
worker_processes 2;
daemon off;
master_process on;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{plain_port};
    listen 127.0.0.1:{tls_port} ssl;
    ssl_certificate {CERTS}/cert.pem;
    ssl_certificate_key {CERTS}/key.pem;
    ssl_protocols {protocols};
    {suites}
    location / {{ default_type application/json; return 200 '{{"status":"ok","pid":1,"worker":0}}'; }}
  }}
}}
"""
    path = os.path.join(d, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    return Server("nginx", ["nginx", "-c", path, "-p", d], tls_port)


def dingo(plain_port, tls_port, tls_max, accept="kernel", name="dingo"):
    d = tempfile.mkdtemp(dir=WORK, prefix="dingo-")
    conf = f"""
[supervisor]
workers = 2
dispatch = "round-robin"
accept = "{accept}"
control_socket = "control.sock"
pid_file = "supervisor.pid"
[[listen]]
address = "127.0.0.1:{plain_port}"
[[listen]]
address = "127.0.0.1:{tls_port}"
tls = true
[tls]
cert = "{CERTS}/cert.pem"
key = "{CERTS}/key.pem"
max_version = "TLSv1.{'2' if tls_max == '1.2' else '3'}"
[admin]
address = ""
[log]
level = "warn"
"""
    path = os.path.join(d, "dingo.toml")
    with open(path, "w") as f:
        f.write(conf)
    return Server(name, [os.path.join(BUILD, "bin", "dingo-supervisor"), "--config", path], tls_port)


def standalone_pair(port):
    servers = []
    for i in range(2):
        servers.append(Server(f"standalone{i}", [os.path.join(BUILD, "bin", "dingo-gateway"), "--standalone",
                                                 "--listen", f"127.0.0.1:{port}"], port))
    return Group(servers)


# ---- benchmarks ---------------------------------------------------------------------

# [supervisor] accept modes the TLS and new-connection benchmarks run side by side.
ACCEPT_MODES = ("kernel", "handoff")


def row(rows, bench, variant, results):
    d, n = results["dingo"], results["peer"]
    rows.append((bench, variant, results.get("peer_name", "nginx"), d["rps"], n["rps"], d["rps"] / max(n["rps"], 1e-9),
                 d["cpu_us"], n["cpu_us"], d["cpu_us"] / max(n["cpu_us"], 1e-9), d.get("errors", 0), n.get("errors", 0)))
    print(f"  {bench} {variant}: dingo {d['rps']:.0f}/s {d['cpu_us']:.1f}us, peer {n['rps']:.0f}/s {n['cpu_us']:.1f}us", file=sys.stderr)


# How a row names a peer other than nginx with its defaults.
PEER_NAMES = {"peer-suites": {"peer_name": "nginx set to dingo's suites and order"}}


def bench_tls(rows, seconds):
    """Each [supervisor] accept mode and nginx, in one run, interleaved. nginx runs twice:
    with its defaults, and set to dingo's suites in dingo's order (the default mode is
    compared with both)."""
    for version in ("1.3", "1.2"):
        ports = {m: (free_port(), free_port()) for m in ACCEPT_MODES}
        ports["peer"] = (free_port(), free_port())
        ports["peer-suites"] = (free_port(), free_port())
        servers = {}
        try:
            for m in ACCEPT_MODES:
                servers[m] = dingo(*ports[m], version, accept=m, name=f"dingo-{m}")
            servers["peer"] = nginx(*ports["peer"], version)
            servers["peer-suites"] = nginx(*ports["peer-suites"], version, dingo_suites=True)
            loads = {name: {
                "wrk": (lambda tls=ports[name][1]: wrk(f"https://127.0.0.1:{tls}/healthz", seconds, 32, True)),
                "full": (lambda tls=ports[name][1]: tlsload(tls, seconds, False, version)),
                "resumed": (lambda tls=ports[name][1]: tlsload(tls, seconds, True, version)),
            } for name in servers}
            res = rounds(servers, loads)
            # The same handshakes at one fixed rate for the default mode and both nginx:
            # 60% of the slowest one's rate above, so that none is saturated and each
            # event loop gets the same work per wake-up.
            fixed = (ACCEPT_MODES[0], "peer", "peer-suites")
            rates = {kind: int(0.6 * min(res[(name, kind)]["rps"] for name in fixed)) for kind in ("full", "resumed")}
            res.update(rounds({name: servers[name] for name in fixed}, {name: {
                f"{kind}-rate": (lambda tls=ports[name][1], kind=kind: tlsload(tls, seconds, kind == "resumed", version,
                                                                              rates[kind]))
                for kind in rates} for name in fixed}))
        finally:
            for srv in servers.values():
                srv.stop()
        default = ACCEPT_MODES[0]

        def compare(variant, mode, key):
            """Rows of `mode` against nginx's defaults, and the default mode against
            nginx set to dingo's suites too."""
            for peer in ("peer", "peer-suites") if mode == default else ("peer",):
                row(rows, "(a) TLS per request", f"TLS {version}, {variant}",
                    dict({"dingo": res[(mode, key)], "peer": res[(peer, key)]}, **PEER_NAMES.get(peer, {})))

        for kind in rates:
            compare(f"{kind} handshake at {rates[kind]}/s (tlsload --rate), accept = {default}", default, f"{kind}-rate")
        for kind, label in (("full", "full handshake (tlsload)"),
                            ("resumed", "resumed handshake (tlsload)"),
                            ("wrk", "wrk -c32 (resumes: SSL_clear keeps the session)")):
            for m in ACCEPT_MODES:
                compare(f"{label}, accept = {m}", m, kind)
        for name in servers:
            r = res[(name, "resumed")]
            print(f"  {name} TLS {version}: resumed {r['resumed']}/{r['all_requests']} in the resumed runs", file=sys.stderr)


def bench_plain(rows, seconds):
    ports = {"dingo": (free_port(), free_port()), "peer": (free_port(), free_port())}
    servers = {"dingo": dingo(*ports["dingo"], "1.3"), "peer": nginx(*ports["peer"], "1.3")}
    try:
        loads = {name: {"ka": (lambda p=ports[name][0]: wrk(f"http://127.0.0.1:{p}/healthz", seconds, 64, False))}
                 for name in servers}
        res = rounds(servers, loads)
    finally:
        for srv in servers.values():
            srv.stop()
    row(rows, "(b) plain keep-alive", "wrk -c64", {"dingo": res[("dingo", "ka")], "peer": res[("peer", "ka")]})


def bench_handoff(rows, seconds):
    """New plain connections through the supervisor, in each accept mode, against the
    same gateway standalone (two processes sharing the port with SO_REUSEPORT)."""
    port = free_port()
    ports = {m: (free_port(), free_port()) for m in ACCEPT_MODES}
    servers = {}
    try:
        for m in ACCEPT_MODES:
            servers[m] = dingo(*ports[m], "1.3", accept=m, name=f"dingo-{m}")
        servers["peer"] = standalone_pair(port)
        loads = {m: {"c": (lambda p=ports[m][0]: wrk(f"http://127.0.0.1:{p}/healthz", seconds, 32, True))}
                 for m in ACCEPT_MODES}
        loads["peer"] = {"c": lambda: wrk(f"http://127.0.0.1:{port}/healthz", seconds, 32, True)}
        res = rounds(servers, loads)
    finally:
        for srv in servers.values():
            srv.stop()
    for m in ACCEPT_MODES:
        row(rows, "(c) new connections", f"plain, Connection: close, accept = {m}",
            {"dingo": res[(m, "c")], "peer": res[("peer", "c")],
             "peer_name": "dingo-gateway --standalone ×2 (SO_REUSEPORT)"})


# ---- charts -------------------------------------------------------------------------

def chart_parts(rows, fanout_rows, idle_rows, storm_series):
    """The measured results the charts need, keyed as bench/charts.CHARTS, each with the
    command and date of this run. Only parts this run measured are present."""
    stamp = {"command": " ".join(["bench/run.py"] + sys.argv[1:]),
             "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    parts = {}
    if rows:
        parts["cpu_per_request"] = dict(stamp, rounds=ROUNDS, rows=[
            {"bench": r[0], "variant": r[1], "peer": r[2], "dingo_rps": r[3], "peer_rps": r[4],
             "dingo_cpu_us": r[6], "peer_cpu_us": r[7], "dingo_errors": r[9], "peer_errors": r[10]} for r in rows])
    if fanout_rows:
        parts["fanout"] = dict(stamp, rounds=ROUNDS, rows=[
            {"rate": rate, "subscribers": subs, "dingo": d, "node": n, "send_floor_us": floor}
            for rate, subs, d, n, floor in fanout_rows])
    if idle_rows:
        parts["idle"] = dict(stamp, rows=[
            {"kind": kind, "kb_per_conn": r["kb_per_conn"], "connected": r["connected"], "wanted": r["wanted"],
             "supervisor_delta_kb": r["supervisor_delta_kb"], "target": target} for kind, r, target in idle_rows])
    if storm_series:
        parts["storm"] = dict(stamp, series=storm_series)
    return parts


def save_and_draw(charts_dir, parts):
    """Merges `parts` into charts_dir/results.json (a part measured now replaces the
    saved one) and draws every chart the file has data for."""
    os.makedirs(charts_dir, exist_ok=True)
    path = os.path.join(charts_dir, "results.json")
    saved = {}
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
    saved.update(parts)
    if parts:
        with open(path + ".tmp", "w") as f:
            json.dump(saved, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(path + ".tmp", path)
    try:
        import charts
    except ImportError as e:
        print(f"charts not drawn ({e}): run with Debian's /usr/bin/python3 (python3-matplotlib); "
              f"{path} keeps the results, `bench/run.py --charts-only` draws them", file=sys.stderr)
        return
    for key, (draw, name) in charts.CHARTS.items():
        if key in saved:
            draw(saved[key], os.path.join(charts_dir, name))
            print(f"  chart {os.path.join(charts_dir, name)} ({saved[key]['date']})", file=sys.stderr)


def main():
    global BUILD, WORK, CERTS, ROUNDS
    import abuse_bench
    import auth_bench
    import chaos_bench
    import million_bench
    import nsclient_bench
    import ops_bench
    import polling_bench
    import pubsub_bench
    import redis_bench
    import redis_kill_bench
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--seconds", type=int, default=5, help="seconds per run")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported, errors summed")
    ap.add_argument("--only", default="tls,plain,handoff,idle,fanout,held,pollcache,roundtrip,ops,reconnect,storm,abuse,auth,"
                    "redis,rediscost,redisplace,rediskill")
    ap.add_argument("--trials", type=int, default=20, help="(reconnect) trials per case")
    ap.add_argument("--idle-connections", type=int, default=100000, help="(idle) connections to hold")
    ap.add_argument("--subscribers", type=int, default=10000, help="(fanout) subscribers")
    ap.add_argument("--abuse-seconds", type=float, default=15,
                    help="(abuse) seconds the well-behaved client measures, idle and under each case")
    ap.add_argument("--abuse-cases", default=",".join(abuse_bench.CASES), help="(abuse) cases to run")
    ap.add_argument("--auth-connects", type=int, default=1500, help="(auth) connections per variant and round")
    ap.add_argument("--auth-storm", type=int, default=2000, help="(auth) clients in the reconnect storm")
    ap.add_argument("--chaos-seconds", type=int, default=600, help="(chaos) seconds of faults")
    ap.add_argument("--million-steps", default="100000,250000,500000,1000000",
                    help="(million) connection counts to ramp through")
    ap.add_argument("--charts-dir", default=os.path.join(HERE, "img"),
                    help="where results.json and the PNG charts go")
    ap.add_argument("--charts-only", action="store_true",
                    help="measure nothing: redraw the charts from CHARTS_DIR/results.json")
    args = ap.parse_args()
    if args.charts_only:
        if not os.path.exists(os.path.join(args.charts_dir, "results.json")):
            sys.exit(f"run.py: no {os.path.join(args.charts_dir, 'results.json')} to draw from")
        save_and_draw(args.charts_dir, {})
        return
    BUILD = os.path.abspath(args.build)
    ROUNDS = args.rounds
    WORK = tempfile.mkdtemp(prefix="dingo-bench-")
    CERTS = os.path.join(WORK, "certs")
    subprocess.run([os.path.join(ROOT, "scripts", "dev-cert.sh"), CERTS], check=True, stdout=subprocess.DEVNULL)
    rows, idle_rows, fanout_rows = [], [], []
    held_rows, pollcache_rows, roundtrip_rows, ops_rows = [], [], [], {}
    reconnect_rows, storm_text, abuse_rows, auth_result = [], "", [], None
    storm_series = None
    chaos_result = None
    million_result = None
    redis_rows, redis_cost, redis_place, redis_kill = [], None, None, None
    env = sys.modules[__name__]
    try:
        for part in args.only.split(","):
            if part == "idle":
                idle_rows = pubsub_bench.bench_idle(env, args.idle_connections)
            elif part == "fanout":
                fanout_rows = pubsub_bench.bench_fanout(env, args.seconds, args.subscribers)
            elif part == "held":
                held_rows = polling_bench.bench_held(env)
            elif part == "pollcache":
                pollcache_rows = polling_bench.bench_pollcache(env, args.seconds)
            elif part == "ops":
                ops_rows = ops_bench.bench_ops(env)
            elif part == "reconnect":
                reconnect_rows = nsclient_bench.bench_reconnect(env, args.trials)
            elif part == "storm":
                series_path = os.path.join(WORK, "storm-series.json")
                storm_text = nsclient_bench.bench_storm(env, series_path)
                with open(series_path) as f:
                    storm_series = json.load(f)
            elif part == "abuse":
                abuse_rows = abuse_bench.bench_abuse(env, args.abuse_seconds, args.abuse_cases.split(","))
            elif part == "auth":
                auth_result = auth_bench.bench_auth(env, args.auth_connects, storm_clients=args.auth_storm)
            elif part == "chaos":
                chaos_result = chaos_bench.bench_chaos(env, args.chaos_seconds)
            elif part == "million":
                million_result = million_bench.bench_million(env, [int(s) for s in args.million_steps.split(",")])
            elif part == "redis":
                redis_rows = redis_bench.bench_crosshost(env, args.seconds, args.subscribers)
            elif part == "rediscost":
                redis_cost = redis_bench.bench_cost(env, args.seconds)
            elif part == "redisplace":
                redis_place = redis_bench.bench_place(env)
            elif part == "rediskill":
                redis_kill = redis_kill_bench.bench_kill(env)
            elif part == "roundtrip":
                roundtrip_rows = polling_bench.bench_roundtrip(env, args.seconds)
            else:
                {"tls": bench_tls, "plain": bench_plain, "handoff": bench_handoff}[part](rows, args.seconds)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    if rows:
        print(f"| benchmark | variant | peer | dingo req/s | peer req/s | req/s ratio | dingo CPU µs/req | "
              f"peer CPU µs/req | CPU ratio | dingo errors (total of {ROUNDS} rounds) | "
              f"peer errors (total of {ROUNDS} rounds) |")
        print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.0f} | {r[4]:.0f} | {r[5]:.2f}× | {r[6]:.1f} | {r[7]:.1f} | {r[8]:.2f}× | {r[9]} | {r[10]} |")
    pubsub_bench.print_tables(idle_rows, fanout_rows)
    polling_bench.print_tables(held_rows, pollcache_rows, roundtrip_rows)
    ops_bench.print_table(ops_rows)
    nsclient_bench.print_tables(reconnect_rows, storm_text)
    abuse_bench.print_table(abuse_rows)
    auth_bench.print_tables(auth_result)
    chaos_bench.print_table(chaos_result)
    million_bench.print_table(million_result)
    redis_bench.print_tables(redis_rows, redis_cost, redis_place)
    redis_kill_bench.print_table(redis_kill)
    save_and_draw(args.charts_dir, chart_parts(rows, fanout_rows, idle_rows, storm_series))


if __name__ == "__main__":
    main()
