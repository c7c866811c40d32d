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
                continuation frames without end; stop at the server's close frame and
                reconnect.
  continuation_ignore  the same, but the clients ignore the close frame and stream on
                until the server resets the connection.
  firstpolls    cursor-less polls over 128 random channels each, back to back on 4
                keep-alive connections (supervisor RSS is the figure to watch);
                `max_header_bytes` raised to 32 KiB, since at the default 8 KiB the
                server refuses such polls (413) before they cost anything.
  racingpolls   rounds of 200 polls sent at once with the same cursor; half the clients
                leave, then a publish must answer every poll still there (hung = no answer
                within 3 s); CLOSE-WAIT sockets on the server port are counted afterwards.
  slowloris     2,000 connections that send one header byte a second each; reconnect
                when cut.
  flood_nolimit new connections from one IP as fast as wrk makes them (Connection: close),
                with the defaults (no per-IP limit).
  flood         the same with `[gateway] max_connections_per_ip = 256` and
                `new_connections_per_ip = 100` (per worker), when this build accepts them.
  large_paced   4 clients publishing 1 MB JSON documents over REST, each one every 0.5 s
                (8 MB/s, which every build keeps up with; `max_body_bytes` and
                `max_message_size` 2 MiB): the loop-lag figure, a fixed offered load.
  large         the same clients back to back, as fast as the server answers: a
                saturating load, whose latency is mostly the wait behind other work.

The probe and the attackers are bench/abuse_attacks.py, run as their own processes
(and runnable by hand against any server).
"""
import json
import os
import subprocess
import sys
import threading
import time

from abuse_attacks import CASES

ATTACKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "abuse_attacks.py")
RAMP_S = 1.0          # the attacker runs alone this long before the probe starts
GOAL_RATIO = 2.0      # the probe's p99 under abuse, at most this times its idle p99

# Per-IP limits ([gateway] max_connections_per_ip and new_connections_per_ip, both per
# worker): the flood case enables each one this build's `--check-config` accepts (the
# report says which); "flood_nolimit" runs the same flood without them, for comparison.
PER_IP_CANDIDATES = (
    ("gateway", "max_connections_per_ip", "256"),
    ("gateway", "new_connections_per_ip", "100"),
)


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
    if case in ("large", "large_paced"):
        gateway += ['max_body_bytes = "2MiB"', 'max_message_size = "2MiB"']
    sections = {"gateway": gateway, "supervisor": []}
    if case == "flood":
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
    r = subprocess.run([sys.executable, ATTACKS, "probe", "--port", str(port),
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
        attacker = subprocess.Popen(["nice", "-n", "10", sys.executable, ATTACKS, "attack", attack,
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
            "sup_rss_kb_max": max(sampler.sup_rss, default=0),
            "sup_rss_kb_first": sampler.sup_rss[0] if sampler.sup_rss else 0,
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
    """Per-round latencies and p99 ratios (each round pairs an idle window with the abuse
    window that followed it on the same server), medians over rounds of costs, and
    totals of failed requests and restarts. A case is met only if every round is."""
    med = lambda xs: sorted(xs)[(len(xs) - 1) // 2]  # the lower median
    idle = [s[0] for s in samples]
    abuse = [s[1] for s in samples]
    ratios = [a["probe"]["p99_ms"] / max(i["probe"]["p99_ms"], 1e-9) for i, a in samples]
    return {
        "idle": "; ".join(f"{i['probe']['p50_ms']:.2f} / {i['probe']['p99_ms']:.2f}" for i in idle),
        "during": "; ".join(f"{a['probe']['p50_ms']:.2f} / {a['probe']['p99_ms']:.2f}" for a in abuse),
        "ratios": ratios,
        "met": all(r <= GOAL_RATIO for r in ratios) and sum(a["probe"]["errors"] for a in abuse) == 0,
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
          "continuation_ignore": "2b. the same, the clients ignoring the server's close frame",
          "firstpolls": "3. first polls over 128 random channels (4 clients, back to back)",
          "racingpolls": "4. 200 polls racing on one cursor, per round",
          "slowloris": "5. slowloris: 2,000 connections, a header byte a second each",
          "flood_nolimit": "6a. connection flood from one IP (wrk -c64, Connection: close), no per-IP limits",
          "flood": "6b. the same flood with the per-IP limits on",
          "large_paced": "7a. large publishes: 4 clients, 1 MB JSON each every 0.5 s (8 MB/s; loop lag)",
          "large": "7b. large publishes: 4 clients, 1 MB JSON back to back (saturating)"}


def mb(kb):
    return f"{kb / 1024:.1f} MB"


def print_table(rows):
    if not rows:
        return
    print()
    print("| abuse case | workers' RSS idle → max | workers' CPU % of a core idle → during "
          "| supervisor RSS idle → max (1 s after) "
          "| well-behaved p50 / p99 ms, idle | during | p99 ratio | failed requests | worker restarts "
          "| loop_lag_ms max, idle → during | met (p99 ≤ 2× idle, none failed)? |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for case, samples, _ in rows:
        s = summarize(samples)
        verdict = "(reference)" if case == "benign" else "met" if s["met"] else "**not met**"
        print(f"| {LABELS[case]} | {mb(s['rss_idle'])} → {mb(s['rss_max'])} | "
              f"{s['cpu_idle']:.0f} → {s['cpu']:.0f} | "
              f"{mb(s['sup_idle'])} → {mb(s['sup_max'])} ({mb(s['sup_after'])}) | "
              f"{s['idle']} | {s['during']} | {'; '.join(f'{r:.1f}×' for r in s['ratios'])} | "
              f"{s['errors']} | {s['restarts']} | {s['lag_idle']:.1f} → {s['lag']:.1f} | {verdict} |")
    print()
    print("What the attackers saw (per round), and CLOSE-WAIT sockets on the server port 1 s after:")
    print()
    for case, samples, per_ip in rows:
        s = summarize(samples)
        extra = ""
        if case == "flood":
            extra = (" per-IP limits: " + ", ".join(f"[{a}] {k} = {v}" for a, k, v in per_ip)) if per_ip else \
                " per-IP limits: none in this build (measured without)"
        print(f"- {case}: {json.dumps(s['attack'])}; CLOSE-WAIT {s['close_wait']}.{extra}")
