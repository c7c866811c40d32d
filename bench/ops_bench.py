"""Figures of issue "Watchdogs and zero-downtime operations" (driven by bench/run.py).

(ops) - time from a worker's kill -9 to its replacement serving;
      - time from the supervisor's kill -9 (under dingo-watchdog --exec) to new
        connections served again, with and without --hold-listeners, and how many
        connection attempts were refused meanwhile (a client connects every 2 ms);
        the time until the new supervisor has adopted every old worker (each holds an
        open keep-alive connection), and whether those connections still answer;
      - requests failed during `dingoctl reload` and during `dingoctl upgrade`, under
        wrk load (keep-alive, 2 threads, 32 connections), and whether the reload or
        upgrade finished inside wrk's load window: `dingoctl status --json` is polled
        while wrk runs for the new generation (every slot ready in it) or the new
        supervisor's pid (with its workers ready); a run that finished late is marked
        and does not count.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pubsub_bench as ps


def ctl(env, control, *args):
    return subprocess.run([os.path.join(env.BUILD, "bin", "dingoctl"), "--socket", control, *args],
                          capture_output=True, text=True, timeout=20)


def status(env, control):
    r = ctl(env, control, "status", "--json")
    return json.loads(r.stdout) if r.returncode == 0 else None


def serves(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def worker_replacement(env):
    plain, tls = env.free_port(), env.free_port()
    sup = ps.dingo_pubsub(env, 2, plain, tls)
    control = sup.control
    try:
        victim = sup.worker_pids[0]
        t0 = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        while time.monotonic() - t0 < 10:
            st = status(env, control)
            w = st and next((w for w in st["workers"] if w["id"] == 0), None)
            if w and w["pid"] not in (0, victim) and w["state"] == "ready":
                break
            time.sleep(0.005)
        return (time.monotonic() - t0) * 1000
    finally:
        sup.stop()


def supervisor_death(env, hold):
    plain, tls = env.free_port(), env.free_port()
    d = os.path.join(env.WORK, f"wd-{int(hold)}-{plain}")
    os.makedirs(d)
    conf = os.path.join(d, "dingo.toml")
    with open(conf, "w") as f:
        f.write(f"""
[supervisor]
workers = 2
control_socket = "control.sock"
pid_file = "supervisor.pid"
[[listen]]
address = "127.0.0.1:{plain}"
[admin]
address = ""
[log]
level = "warn"
""")
    sup_cmd = f'{os.path.join(env.BUILD, "bin", "dingo-supervisor")} --config {conf}'
    args = [os.path.join(env.BUILD, "bin", "dingo-watchdog"), "--config", conf, "--exec", sup_cmd,
            "--interval", "200ms", "--timeout", "500ms", "--failures", "2"]
    if hold:
        args.append("--hold-listeners")
    log = open(os.path.join(d, "watchdog.log"), "wb")
    wd = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    control = os.path.join(d, "control.sock")
    try:
        deadline = time.time() + 10
        while time.time() < deadline and not (status(env, control) and serves(plain)):
            time.sleep(0.05)
        first_status = status(env, control)
        first = first_status["pid"]
        old_workers = sorted(w["pid"] for w in first_status["workers"])
        # An open keep-alive connection on each worker (round-robin): they must survive,
        # and they keep the orphaned workers alive to be adopted.
        import http.client
        held = []
        for _ in old_workers:
            c = http.client.HTTPConnection("127.0.0.1", plain, timeout=5)
            c.request("GET", "/healthz")
            c.getresponse().read()
            held.append(c)
        refused, stop = [0], threading.Event()

        def prober():
            while not stop.is_set():
                try:
                    socket.create_connection(("127.0.0.1", plain), timeout=5).close()
                except ConnectionRefusedError:
                    refused[0] += 1
                except OSError:
                    pass
                time.sleep(0.002)

        t = threading.Thread(target=prober)
        t.start()
        time.sleep(0.2)
        t0 = time.monotonic()
        os.kill(first, signal.SIGKILL)
        while time.monotonic() - t0 < 20:
            st = status(env, control)
            if st and st["pid"] != first and serves(plain):
                break
            time.sleep(0.005)
        elapsed = (time.monotonic() - t0) * 1000
        # The new supervisor adopts the old workers (they re-attach over the control socket).
        adopted_ms = None
        while time.monotonic() - t0 < 20:
            st = status(env, control)
            if st and sorted(w["pid"] for w in st["workers"] if w.get("adopted") and w["state"] == "ready") == old_workers:
                adopted_ms = (time.monotonic() - t0) * 1000
                break
            time.sleep(0.005)
        time.sleep(0.2)
        stop.set()
        t.join()
        kept = 0
        for c in held:
            try:
                c.request("GET", "/healthz")
                kept += c.getresponse().status == 200
            except OSError:
                pass
            c.close()
        return {"ms": elapsed, "refused": refused[0], "adopted_ms": adopted_ms, "kept": kept, "held": len(held)}
    finally:
        st = status(env, control)
        os.killpg(wd.pid, signal.SIGTERM)
        wd.wait(timeout=20)
        if st:
            for w in st["workers"]:
                try:
                    os.kill(w["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass
        log.close()


def finished(env, control, action, before, new_pid):
    """Whether `action` (reload or upgrade) has finished: a reload when the supervisor's
    generation moved past `before["generation"]`, it no longer says `reloading`, and
    every slot runs a ready worker of the new generation; an upgrade when the new
    supervisor (`new_pid`) answers on the control socket, is not `reloading`, and all
    its workers are ready."""
    st = status(env, control)
    if not st or st.get("reloading"):
        return False
    want = len(before["workers"])
    if action == "reload":
        gen = st["generation"]
        ready = [w for w in st["workers"] if w["generation"] == gen and w["state"] == "ready"]
        return gen > before["generation"] and len(ready) == want
    ready = [w for w in st["workers"] if w["state"] == "ready"]
    return st["pid"] == new_pid and len(ready) >= want


def under_wrk(env, action, seconds=6):
    """Requests failed during `dingoctl ACTION` under wrk, and whether the action
    finished inside wrk's load window (polled on the control socket while wrk runs):
    a reload or upgrade that is still under way when the load stops proves nothing."""
    plain, tls = env.free_port(), env.free_port()
    sup = ps.dingo_pubsub(env, 2, plain, tls)
    control = sup.control
    new_pid = None
    try:
        before = status(env, control)
        t0 = time.monotonic()
        w = subprocess.Popen(["wrk", "-t2", "-c32", f"-d{seconds}s", f"http://127.0.0.1:{plain}/healthz"],
                             stdout=subprocess.PIPE, text=True)
        time.sleep(seconds / 3)
        t_action = time.monotonic()
        r = ctl(env, control, action)
        if r.returncode != 0:
            raise RuntimeError(f"dingoctl {action}: {r.stderr}")
        if action == "upgrade":
            m = re.search(r"pid[\s\":]+(\d+)", r.stdout)
            new_pid = int(m.group(1)) if m else None
        # wrk's window is [t0, t0 + seconds]; poll until the action is done or the window ends.
        done_ms = None
        while time.monotonic() < t0 + seconds and w.poll() is None:
            if finished(env, control, action, before, new_pid):
                done_ms = (time.monotonic() - t_action) * 1000
                break
            time.sleep(0.05)
        out, _ = w.communicate(timeout=seconds + 30)
        reqs = int(re.search(r"(\d+) requests in", out).group(1))
        errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        failed = (sum(int(x) for x in errors.groups()) if errors else 0) + (int(non2xx.group(1)) if non2xx else 0)
        st = status(env, control)
        if st and st["pid"] != sup.proc.pid:
            new_pid = st["pid"]
        return {"requests": reqs, "failed": failed, "detail": errors.group(0) if errors else "",
                "finished_ms": done_ms, "window_left_ms": (t0 + seconds - t_action) * 1000}
    finally:
        st = status(env, control)
        if new_pid:
            for wk in (st or {}).get("workers", []):
                try:
                    os.kill(wk["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass
            os.kill(new_pid, signal.SIGKILL)
        sup.stop()


def bench_ops(env):
    rows = {
        "worker": env.median([worker_replacement(env) for _ in range(env.ROUNDS)]),
        "sup_plain": [supervisor_death(env, False) for _ in range(env.ROUNDS)],
        "sup_hold": [supervisor_death(env, True) for _ in range(env.ROUNDS)],
        "reload": [under_wrk(env, "reload") for _ in range(env.ROUNDS)],
        "upgrade": [under_wrk(env, "upgrade") for _ in range(env.ROUNDS)],
    }
    print(f"  ops {rows}", file=sys.stderr)
    return rows


def print_table(rows):
    if not rows:
        return
    print()
    print("| (ops) | figure |")
    print("|---|---|")
    print(f"| worker kill -9 → replacement serving | {rows['worker']:.0f} ms (median) |")
    for key, label in (("sup_plain", "supervisor kill -9 → served again (dingo-watchdog --exec)"),
                       ("sup_hold", "… with --hold-listeners")):
        runs = rows[key]
        print(f"| {label} | " + ", ".join(f"{r['ms']:.0f} ms / {r['refused']} refused" for r in runs) + " |")
    runs = [r for key in ("sup_plain", "sup_hold") for r in rows[key]]
    print("| supervisor kill -9 → every old worker adopted by the new one | " +
          ", ".join("not adopted" if r["adopted_ms"] is None else f"{r['adopted_ms']:.0f} ms" for r in runs) + " |")
    print("| keep-alive connections open across the kill that still answer | " +
          ", ".join(f"{r['kept']} of {r['held']}" for r in runs) + " |")
    for key, label in (("reload", "requests failed during dingoctl reload (wrk -t2 -c32)"),
                       ("upgrade", "requests failed during dingoctl upgrade (wrk -t2 -c32)")):
        runs = rows[key]
        print(f"| {label} | " + ", ".join(f"{r['failed']} of {r['requests']:,}" for r in runs) + " |")
        # A run counts only if the action finished while wrk was still loading the server.
        print(f"| … {key} finished inside the load window (ms after the command; window left) | " +
              ", ".join(f"yes, {r['finished_ms']:.0f} ms of {r['window_left_ms']:.0f}" if r["finished_ms"] is not None
                        else f"**NO** (not finished within {r['window_left_ms']:.0f} ms: run does not count)"
                        for r in runs) + " |")
