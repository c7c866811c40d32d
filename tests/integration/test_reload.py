"""Reload (dingoctl reload, SIGHUP) and drain-worker: rolling, nothing dropped."""
import http.client
import json
import os
import signal
import socket
import threading
import time
import unittest

from harness import Supervisor, http_get, metrics_problems, promtool_check, series, wait_for
from test_pubsub import publish
from wsclient import Closed, WsClient


def current(sup):
    """The workers that hold the slots now (replaced ones still draining are left out)."""
    return {w["id"]: w for w in sup.status()["workers"] if w["state"] != "draining"}


class Load:
    """Threads running `fn` in a loop until stopped. Whatever a thread raises is kept, so
    that a thread can never die unseen: the test fails on it."""

    def __init__(self, fn, threads):
        self.stop = threading.Event()
        self.errors = []
        self.threads = [threading.Thread(target=self._run, args=(fn,)) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self, fn):
        try:
            while not self.stop.is_set():
                fn()
        except BaseException as e:  # noqa: B036 (reported by finish)
            self.errors.append(repr(e))

    def ok(self):
        """True while no thread has raised; else fails the test at once with what they raised
        (for wait_for conditions, so that a dead thread is not mistaken for a slow one)."""
        if self.errors:
            raise AssertionError(f"{len(self.errors)} load threads raised: {self.errors[:3]}")
        return True

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)
        alive = [t for t in self.threads if t.is_alive()]
        assert not alive, f"{len(alive)} load threads still running"
        return self.errors


def scrape_problems(sup):
    """One /metrics scrape: what a Prometheus server would reject, or promtool's complaint."""
    status, body, _ = http_get(sup.admin_port, "/metrics")
    if status != 200:
        return [f"/metrics answered {status}"]
    text = body.decode()
    problems = metrics_problems(text)
    ok, out = promtool_check(text)
    return problems + ([] if ok else [f"promtool: {out}"])


def reloaded(sup, old_pids, generation):
    ws = current(sup)
    return (len(ws) == sup.workers and all(w["state"] == "ready" and w["generation"] == generation
                                            and w["pid"] not in old_pids.values() for w in ws.values()))


class ReloadTest(unittest.TestCase):
    def setUp(self):
        self.sup = Supervisor(workers=2, gateway_extra="client_publish = true\n").start()

    def tearDown(self):
        self.sup.cleanup()

    def test_reload_under_load_fails_nothing_and_replaces_every_worker(self):
        port = self.sup.http_port
        old = self.sup.worker_pids()
        gen = self.sup.status()["generation"]
        failures, done, scrapes = [], [0], [0]

        def client():
            # Any exception (HTTPException, a reset, a timeout...) fails the test: Load keeps it.
            status, _, _ = http_get(port, "/healthz", timeout=5)
            if status != 200:
                failures.append(status)
            done[0] += 1

        def scraper():
            # Meanwhile Prometheus scrapes: old and new workers side by side stay distinct.
            failures.extend(scrape_problems(self.sup))
            scrapes[0] += 1

        load = Load(client, 4)
        scraping = Load(scraper, 1)
        try:
            wait_for(lambda: load.ok() and done[0] >= 50, 10, what="load before the reload")
            r = self.sup.ctl("reload")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(f"generation {gen + 1}", r.stdout)
            wait_for(lambda: reloaded(self.sup, old, gen + 1), 10, what="every worker replaced")
            after = done[0]
            wait_for(lambda: load.ok() and scraping.ok() and done[0] >= after + 50, 10, what="load after the reload")
        finally:
            errors = load.finish() + scraping.finish()
        self.assertEqual(errors, [], f"{len(errors)} client threads raised")
        self.assertEqual(failures, [], f"{len(failures)} failed of {done[0]}")
        self.assertGreater(done[0], 100)
        self.assertGreater(scrapes[0], 0)
        # The replaced workers drain out.
        wait_for(lambda: all(w["state"] != "draining" for w in self.sup.status()["workers"]), 10,
                 what="the old generation gone")

    def test_a_bad_config_keeps_the_running_generation(self):
        old = self.sup.worker_pids()
        gen = self.sup.status()["generation"]
        with open(self.sup.config, "a") as f:
            f.write('\nidle_timeout = "forever"\n')
        r = self.sup.ctl("reload")
        self.assertEqual(r.returncode, 2)
        self.assertRegex(r.stderr, r"dingo\.toml:\d+: key 'gateway\.idle_timeout'")
        # SIGHUP says the same in the log and changes nothing either.
        self.sup.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: self.sup.log().count("reload refused") >= 2, 5, what="both refusals logged")
        time.sleep(0.3)  # nothing is to happen: a short look that nothing did
        self.assertEqual(self.sup.worker_pids(), old)
        self.assertEqual(self.sup.status()["generation"], gen)
        self.assertEqual(http_get(self.sup.http_port)[0], 200)

    def test_a_listener_change_needs_a_restart(self):
        text = open(self.sup.config).read().replace(f"127.0.0.1:{self.sup.http_port}", "127.0.0.1:1")
        with open(self.sup.config, "w") as f:
            f.write(text)
        r = self.sup.ctl("reload")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("[[listen]]", r.stderr)

    def test_sighup_reloads_and_new_settings_apply_hub_keeps_positions(self):
        port = self.sup.http_port
        old = self.sup.worker_pids()
        gen = self.sup.status()["generation"]
        ws = WsClient(port)
        sub = ws.command("subscribe", channel="/reload")
        _, p1 = publish(port, "/reload", "before")
        self.assertEqual(ws.next_message()["position"], p1["position"])
        with open(self.sup.config, "a") as f:
            f.write('publish_token = "t0ken"\n')  # lands in [gateway], the last table
        self.sup.proc.send_signal(signal.SIGHUP)
        # The WebSocket on the old worker is told to come back, then closed with 1012.
        ws.sock.settimeout(10)
        m = ws.recv_json()
        self.assertEqual(m["event"], "reconnect")
        with self.assertRaises(Closed) as cm:
            ws.recv_frame()
        self.assertEqual(cm.exception.code, 1012)
        ws.sock.close()
        wait_for(lambda: reloaded(self.sup, old, gen + 1), 10, what="every worker replaced")
        self.assertEqual(publish(port, "/reload", "x")[0], 401)  # the new workers need the token
        status, p2 = publish(port, "/reload", "after", token="t0ken")
        self.assertEqual(status, 200)
        # The hub lives in the supervisor: positions go on, and resuming works across it.
        ws = WsClient(port)
        r = ws.command("subscribe", channel="/reload", since=p1["position"])
        self.assertTrue(r["recovered"])
        self.assertEqual([x["data"] for x in r["messages"]], ["after"])
        self.assertEqual(sub["position"].split(".")[0], p2["position"].split(".")[0])
        ws.close()

    def test_drain_worker_replaces_one_slot_only(self):
        # The handoff mode's round-robin alternates, which gives the two held connections
        # below one worker each (the kernel mode's picks at random).
        self.sup.cleanup()
        self.sup = Supervisor(workers=2, supervisor_extra='accept = "handoff"\n',
                              gateway_extra="client_publish = true\n").start()
        old = self.sup.worker_pids()
        # A request half sent to each worker keeps the drained one draining (until the
        # header deadline): round-robin gives one connection to each.
        held = []
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", self.sup.http_port), timeout=10)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            held.append(s)
        wait_for(lambda: all(w["connections"] == 1 for w in self.sup.status()["workers"]), 10,
                 what="one connection on each worker")
        r = self.sup.ctl("drain-worker", "1")
        self.assertEqual(r.returncode, 0, r.stderr)

        def replaced():
            ws = current(self.sup)
            return len(ws) == 2 and ws[1]["pid"] != old[1] and ws[1]["state"] == "ready"
        wait_for(replaced, 10, what="worker 1 replaced")
        self.assertEqual(current(self.sup)[0]["pid"], old[0])
        # The old worker 1 drains beside its successor: two processes in slot 1, and a
        # scrape that tells them apart.
        st = self.sup.status()
        slot1 = sorted((w["state"], w["pid"]) for w in st["workers"] if w["id"] == 1)
        self.assertEqual(slot1, sorted([("draining", old[1]), ("ready", current(self.sup)[1]["pid"])]))
        self.assertEqual(scrape_problems(self.sup), [])
        text = self.sup.ctl("metrics").stdout
        self.assertEqual(metrics_problems(text), [])
        self.assertEqual(sorted(l["pid"] for l, _ in series(text, "dingo_worker_connections", worker=1)),
                         sorted(str(pid) for _, pid in slot1))
        self.assertEqual(series(text, "dingo_worker_connections", worker=1, pid=old[1])[0][1], 1)
        # Its request in flight is still served, then the connection closes.
        for s in held:
            s.sendall(b"\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
                if b"\r\n\r\n" in data and b"connection: close" not in data.lower():
                    break  # the live worker keeps the connection open
            self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)
            s.close()
        wait_for(lambda: not os.path.exists(f"/proc/{old[1]}") or
                 "zombie" in open(f"/proc/{old[1]}/status").read(), 10, what="the old worker 1 gone")
        r = self.sup.ctl("drain-worker", "7")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no worker 7", r.stderr)

class UpgradeTest(unittest.TestCase):
    def test_upgrade_under_load_refuses_nothing(self):
        sup = Supervisor(workers=2, tls=False).start()
        new_pid, load = None, None
        try:
            old = sup.status()["pid"]
            refused, served, other = [], [0], []

            def client():
                try:
                    s = socket.create_connection(("127.0.0.1", sup.http_port), timeout=10)
                except ConnectionRefusedError:
                    refused.append(1)
                    return
                try:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(4096).startswith(b"HTTP/1.1 200"):
                        served[0] += 1
                    else:
                        other.append("bad answer")
                except OSError as e:
                    other.append(repr(e))
                finally:
                    s.close()

            load = Load(client, 2)
            wait_for(lambda: load.ok() and served[0] >= 20, 10, what="load before the upgrade")
            r = sup.ctl("upgrade")
            self.assertEqual(r.returncode, 0, r.stderr)

            def taken_over():
                try:
                    st = sup.status()
                except ValueError:
                    return None
                ready = sum(w["state"] == "ready" for w in st["workers"]) == 2
                return st["pid"] if st["pid"] != old and ready else None
            new_pid = wait_for(taken_over, 10, what="the new supervisor")
            sup.proc.wait(timeout=10)  # the old one drains and exits
            after = served[0]
            wait_for(lambda: load.ok() and served[0] >= after + 20, 10, what="load after the upgrade")
            self.assertEqual(load.finish(), [])
            print(f"\nupgrade under load: {served[0]} served, {len(refused)} refused, {len(other)} other {other[:3]}")
            self.assertEqual(refused, [])
            self.assertEqual(other, [])
            self.assertGreater(served[0], 50)
            with open(sup.pid_file) as f:
                self.assertEqual(int(f.read()), new_pid)
            self.assertEqual(http_get(sup.http_port)[0], 200)
        finally:
            if load:
                load.stop.set()
            if new_pid:
                try:
                    for w in sup.status()["workers"]:
                        os.kill(w["pid"], signal.SIGKILL)
                except Exception:
                    pass
                os.kill(new_pid, signal.SIGKILL)
            sup.cleanup()


if __name__ == "__main__":
    unittest.main()
