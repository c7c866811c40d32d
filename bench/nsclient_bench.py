"""Figures of issue "nsclient" (driven by bench/run.py).

(reconnect) a `dingo-nsclient connect` on gateway A (seeds A then B, standalone TLS
            gateways on 127.0.0.2 and 127.0.0.3); A dies; time until the client is
            subscribed again on B, read from its stderr. Two deaths:
              - kill -9 of A's process: the kernel closes the connection (FIN/RST), the
                client sees it at once;
              - SIGSTOP of A: a black hole (the kernel still ACKs, nothing answers); the
                client notices by its keepalive (--keepalive 2s), and its race skips A
                (whose TCP handshake still completes) after the 250 ms stagger.
            Each with the default policy (first retry after a drop drawn over [0, 8 s])
            and with --drop-spread 0 --retry-initial 100ms (detection + race only).
(storm)     bench/reconnect_sim: 10,000 simulated clients, ours vs socket.io-client vs
            gRPC (the real dingo::ns::Backoff; see docs/nsclient-reconnect.md).
"""
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time


def _gateway(env, host, port, work):
    conf = os.path.join(work, f"gw-{host}.toml")
    with open(conf, "w") as f:
        f.write(f'[tls]\ncert = "{env.CERTS}/cert.pem"\nkey = "{env.CERTS}/key.pem"\n[log]\nlevel = "warn"\n')
    p = subprocess.Popen([os.path.join(env.BUILD, "bin", "dingo-gateway"), "--standalone", "--config", conf,
                          "--listen-tls", f"{host}:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return p
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"gateway {host}:{port} did not start")


def _trial(env, work, port, mode, policy):
    a = _gateway(env, "127.0.0.2", port, work)
    b = _gateway(env, "127.0.0.3", port, work)
    db = os.path.join(tempfile.mkdtemp(dir=work), "ns.db")
    args = [os.path.join(env.BUILD, "bin", "dingo-nsclient"), "--db", db, "--ca", f"{env.CERTS}/ca.pem",
            "--server-name", "localhost", "--seed", f"127.0.0.2:{port}", "--seed", f"127.0.0.3:{port}",
            "connect", "--channel", "/bench", "--keepalive", "2s"]
    if policy == "detect":
        args += ["--drop-spread", "0s", "--retry-initial", "100ms"]
    client = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []

    def read():
        for line in client.stderr:
            lines.append((time.monotonic(), line))
    t = threading.Thread(target=read, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("subscribed" in x for _, x in lines):
            time.sleep(0.01)
        assert any(f"connected to 127.0.0.2:{port}" in x for _, x in lines), lines
        t0 = time.monotonic()
        if mode == "rst":
            a.kill()
        else:
            a.send_signal(signal.SIGSTOP)
        deadline = t0 + 60
        while time.monotonic() < deadline:
            after = [ts for ts, x in lines if ts >= t0 and "subscribed" in x]
            if after:
                return (after[0] - t0) * 1000
            time.sleep(0.01)
        return None
    finally:
        client.kill()
        client.wait()
        for p in (a, b):
            try:
                p.send_signal(signal.SIGCONT)
            except ProcessLookupError:
                pass
            p.kill()
            p.wait()


def _pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def bench_reconnect(env, trials=20):
    work = tempfile.mkdtemp(prefix="dingo-ns-bench-")
    rows = []
    for mode in ("rst", "blackhole"):
        for policy in ("default", "detect"):
            times = []
            for _ in range(trials):
                port = env.free_port()
                ms = _trial(env, work, port, mode, policy)
                if ms is not None:
                    times.append(ms)
            rows.append({"mode": mode, "policy": policy, "n": len(times), "trials": trials,
                         "p50": _pct(times, 0.5) if times else None, "p99": _pct(times, 0.99) if times else None,
                         "max": max(times) if times else None})
            print(f"  reconnect {rows[-1]}", flush=True)
    return rows


def bench_storm(env, series_path=None):
    """The simulation's tables (markdown); with series_path, its per-100 ms time series
    are written there as JSON too (bench/charts.py draws them)."""
    args = [os.path.join(env.BUILD, "bin", "reconnect_sim")]
    if series_path:
        args += ["--series", series_path]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300, check=True)
    return r.stdout


def print_tables(reconnect_rows, storm_text):
    if reconnect_rows:
        print()
        print("| (a) reconnect after a node dies | policy | trials | p50 | p99 | max |")
        print("|---|---|---:|---:|---:|---:|")
        for r in reconnect_rows:
            label = {"rst": "process killed (FIN/RST)", "blackhole": "silent black hole (SIGSTOP), keepalive 2s"}[r["mode"]]
            pol = {"default": "default (drop spread 8 s)", "detect": "--drop-spread 0 --retry-initial 100ms"}[r["policy"]]
            if r["p50"] is None:
                print(f"| {label} | {pol} | 0/{r['trials']} | – | – | – |")
            else:
                print(f"| {label} | {pol} | {r['n']}/{r['trials']} | {r['p50']:.0f} ms | {r['p99']:.0f} ms | {r['max']:.0f} ms |")
    if storm_text:
        print()
        print(storm_text)
